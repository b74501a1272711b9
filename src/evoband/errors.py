"""The package's exception types: one root, so callers can catch everything evoband raises."""

from __future__ import annotations


class EvobandError(Exception):
    """Root of every error evoband raises on purpose (bad input, unusable files)."""


class DataError(EvobandError):
    """The image data cannot be found or read."""


class ConfigError(EvobandError):
    """A configuration or an argument is invalid."""


class StoreError(EvobandError):
    """A run directory or its ledger cannot be used."""
