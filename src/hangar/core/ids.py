"""Identifier generation."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A new random identifier (UUID4 text); faces may render it differently."""
    return str(uuid.uuid4())
