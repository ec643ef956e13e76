"""Options of the Wrenn face (env: `HANGAR_WRENN__<NAME>`)."""

from __future__ import annotations

from pydantic import BaseModel


class WrennSettings(BaseModel):
    """Wrenn face settings."""

    oauth_redirect_url: str | None = None
    """Frontend base URL OAuth callbacks redirect to (Wrenn's OAUTH_REDIRECT_URL)."""
    api_key_prefix: str = "wrn_"
