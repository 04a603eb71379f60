"""The backends layer: interchangeable executors (torch, compile, onnxruntime, tensorrt) of the engine's
three networks, behind :class:`dreamwire.engine.api.Backend`; ONNX export and the engine cache."""
