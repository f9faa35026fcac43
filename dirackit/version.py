"""The package version, in a module of its own so that any part of dirackit can record it without
importing the package root."""
__version__ = "0.1.0"
