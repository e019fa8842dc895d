"""The version of batchlib."""

__version__ = "0.1.0"
