"""audiobatch: a distributed batch pipeline for speech and audio models on Ray Data."""

__version__ = "0.1.0"
