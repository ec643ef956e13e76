"""Hangar: a self-hostable compute platform."""

__version__ = "0.1.0"
