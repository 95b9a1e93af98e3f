"""The inference service: FastAPI on onnxruntime. Never imports torch (nor :mod:`model`)."""
