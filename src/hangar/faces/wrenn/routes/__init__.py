"""Wrenn routes, one module per tag of the spec."""
