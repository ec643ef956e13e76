"""The FastVM face: VMs, snapshots, IPv6 ingress firewall, console, exec and quotas."""

from __future__ import annotations

from fastapi import FastAPI

from hangar.faces.fastvm import errors
from hangar.faces.fastvm.routes import console, health, org, snapshots, vms
from hangar.faces.fastvm.settings import FastVMSettings
from hangar.web.registry import FaceSpec

NAME = "fastvm"


def _configure(app: FastAPI) -> None:
    # `/v1/vms/` is no route: a 404 in this face's shape, not a redirect the spec never names.
    app.router.redirect_slashes = False


FACE = FaceSpec(
    name=NAME,
    title="FastVM Public API (Hangar)",
    version="1.0.0",
    description="Wire-compatible FastVM API served by Hangar.",
    routers=[m.router for m in (health, vms, console, snapshots, org)],
    errors=errors.STYLE,
    settings=FastVMSettings,
    authenticators=("api_key", "user_jwt"),
    configure=_configure,
)
