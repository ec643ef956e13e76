"""Options of the FastVM face (env: `HANGAR_FASTVM__<NAME>`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FastVMSettings(BaseModel):
    """FastVM face settings."""

    default_exec_timeout_sec: int = Field(default=60, ge=1)
    """`timeoutSec` of an exec request that gives none (the core bounds the maximum)."""
    console_cols: int = Field(default=80, ge=1)
    console_rows: int = Field(default=24, ge=1)
    """Terminal size a console starts with, until the client sends a resize message."""
