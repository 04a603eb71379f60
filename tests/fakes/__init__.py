"""Stand-ins for SDKs that cannot run on the Linux CI machine (SpoutGL, CUDA, TensorRT, TouchDesigner's td)."""
