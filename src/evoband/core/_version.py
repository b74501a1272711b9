"""The package version (written into run.json and exported programs)."""

__version__ = "0.1.0"
