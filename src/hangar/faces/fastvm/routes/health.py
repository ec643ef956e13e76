"""`/healthz`, `/livez` and `/readyz` of the face, with failures in FastVM's error shape."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hangar.faces.fastvm.errors import error_response
from hangar.web.deps import PlatformDep
from hangar.web.health import agents_check, database_check

router = APIRouter(tags=["System"])


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> JSONResponse:
    """The database and every connected agent answer; else 503 naming what failed."""
    checks = {"database": await database_check(platform), "agents": await agents_check(platform)}
    failed = [f"{name} {result}" for name, result in checks.items() if result != "ok"]
    if failed:
        return error_response(503, "; ".join(failed))
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(platform: PlatformDep) -> JSONResponse:
    """Ready for traffic: the database answers."""
    result = await database_check(platform)
    if result != "ok":
        return error_response(503, f"database {result}")
    return JSONResponse({"status": "ok"})
