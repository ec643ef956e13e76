"""Liveness, readiness and health probes on the main port."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hangar.core.platform import Platform
from hangar.web.deps import PlatformDep

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(platform: PlatformDep) -> JSONResponse:
    """Ready for traffic: the database answers."""
    try:
        await platform.db.ping()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})


async def database_check(platform: Platform) -> str:
    """`ok`, or why the database does not answer."""
    try:
        await platform.db.ping()
    except Exception as exc:
        return f"error: {exc}"
    return "ok"


async def agents_check(platform: Platform, timeout: float = 5.0) -> str:
    """`ok` when at least one agent is connected and every connected one answers."""
    hosts = platform.fleet.hosts()
    if not hosts:
        return "error: no agent connected"
    for handle in hosts:
        try:
            with anyio.fail_after(timeout):
                await handle.client.info()
        except Exception as exc:
            return f"error: agent {handle.host_id}: {exc or type(exc).__name__}"
    return "ok"


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> JSONResponse:
    """Every dependency, one by one."""
    checks = {"database": await database_check(platform)}
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503
    )
