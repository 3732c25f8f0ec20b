"""Glaze for painters: an open style cloak for Krita, GIMP and the command line."""

__version__ = "0.1.0"
