"""voxgate-server: an OpenAI-compatible speech server."""

__version__ = "0.1.0"
