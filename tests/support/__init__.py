"""Test support: a fake GitHub, live Hangar servers and Wrenn API helpers."""
