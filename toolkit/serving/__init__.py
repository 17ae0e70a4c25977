"""Using a trained model: whole-recording inference, the Python API, ONNX export and its runtime."""
