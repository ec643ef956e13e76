"""`/healthz`, `/livez` and `/readyz` of the face, with failures in FastVM's error shape.

The probes need no credentials (the spec's `security: []`), so failures are named in generic
words; `hangar.web.health` logs the details.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hangar.faces.fastvm.errors import error_response
from hangar.web.deps import PlatformDep
from hangar.web.health import OK, agents_check, database_check, run_checks

router = APIRouter(tags=["System"])
FAILURES = {"database": "database unavailable", "agents": "no host online"}


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> JSONResponse:
    """The database answers and a regular host is online; else 503 saying which is not."""
    checks = await run_checks(platform, {"database": database_check, "agents": agents_check})
    failed = [FAILURES[name] for name, result in checks.items() if result != OK]
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
    if await database_check(platform) != OK:
        return error_response(503, FAILURES["database"])
    return JSONResponse({"status": "ok"})
