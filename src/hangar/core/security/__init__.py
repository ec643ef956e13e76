"""Secrets handling: password hashing, opaque token hashing and JWT signing."""
