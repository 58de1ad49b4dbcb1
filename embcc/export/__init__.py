"""Format writers (onnx, later gguf and tensorrt) and the graph transforms every format shares."""
