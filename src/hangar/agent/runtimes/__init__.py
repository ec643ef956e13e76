"""Runtimes: one interface, several ways to isolate a sandbox."""
