"""Kokoro-82M v1.0 through onnxruntime: multilingual voices, weighted voice mixing, native speed."""
