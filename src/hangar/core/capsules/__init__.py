"""Capsules: isolated compute placed on a host agent, their templates and usage."""
