"""voxgate-manager: on-demand lifecycle and proxy for voxgate speech models."""

__version__ = "0.1.0"
