"""The backends layer: interchangeable executors (torch, compile, onnxruntime, tensorrt) of the engine's
three networks, behind :class:`dreamwire.engine.backend.Backend`; ONNX export and the engine cache."""
