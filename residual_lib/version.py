"""The library version, recorded in every cache manifest and provenance block."""

__version__ = "0.1.0"
