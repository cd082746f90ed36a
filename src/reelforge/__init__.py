"""ReelForge: a self-hosted, GPU-accelerated video-building service."""

__version__ = "0.1.0"
