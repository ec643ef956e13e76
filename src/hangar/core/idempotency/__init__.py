"""Idempotency keys: a mutation repeated with the same key is answered once."""
