"""The Wrenn face: accounts, teams, API keys, capsules, channels and hosts."""

from __future__ import annotations

from hangar.faces.wrenn import errors
from hangar.faces.wrenn.routes import (
    api_keys,
    auth,
    capsules,
    channels,
    files,
    hosts,
    oauth,
    snapshots,
    streams,
    teams,
    users,
)
from hangar.faces.wrenn.settings import WrennSettings
from hangar.web.registry import FaceSpec

NAME = "wrenn"

FACE = FaceSpec(
    name=NAME,
    title="Wrenn API (Hangar)",
    version="0.1.0",
    description="Wire-compatible Wrenn API served by Hangar.",
    routers=[
        m.router
        for m in (
            auth,
            oauth,
            api_keys,
            users,
            teams,
            capsules,
            files,
            snapshots,
            streams,
            channels,
            hosts,
        )
    ],
    errors=errors.STYLE,
    settings=WrennSettings,
    authenticators=("api_key", "user_jwt", "ws_subprotocol"),
)
