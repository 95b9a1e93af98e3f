"""Checkpoint -> ``model.onnx`` (plain standard ops, metadata for the service) and parity checks."""
