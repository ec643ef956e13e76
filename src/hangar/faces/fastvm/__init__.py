"""The FastVM face: VMs, snapshots, IPv6 ingress firewall, console, exec and quotas."""

from __future__ import annotations

from hangar.core.platform import Platform
from hangar.faces.fastvm import errors
from hangar.faces.fastvm.routes import console, health, org, snapshots, vms
from hangar.faces.fastvm.settings import FastVMSettings
from hangar.web.face import Face, new_face_app

NAME = "fastvm"


def create_face(platform: Platform, settings: FastVMSettings) -> Face:
    """Build the FastVM face on the shared platform."""
    app = new_face_app(
        platform,
        title="FastVM Public API (Hangar)",
        version="1.0.0",
        description="Wire-compatible FastVM API served by Hangar.",
    )
    app.state.fastvm_settings = settings
    # `/v1/vms/` is no route: a 404 in this face's shape, not a redirect the spec never names.
    app.router.redirect_slashes = False
    errors.install(app)
    for module in (health, vms, console, snapshots, org):
        app.include_router(module.router)
    return Face(NAME, app)
