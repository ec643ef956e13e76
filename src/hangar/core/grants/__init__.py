"""Grants: single-use access tokens (consoles, terminals, installs), hashed, with a TTL."""
