"""The Wrenn face: accounts, teams, API keys, capsules, channels and hosts."""

from __future__ import annotations

from hangar.core.platform import Platform
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
from hangar.web.face import Face, new_face_app

NAME = "wrenn"


def create_face(platform: Platform, settings: WrennSettings) -> Face:
    """Build the Wrenn face on the shared platform."""
    app = new_face_app(
        platform,
        title="Wrenn API (Hangar)",
        version="0.1.0",
        description="Wire-compatible Wrenn API served by Hangar.",
    )
    app.state.wrenn_settings = settings
    errors.install(app)
    for module in (
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
    ):
        app.include_router(module.router)
    return Face(NAME, app)
