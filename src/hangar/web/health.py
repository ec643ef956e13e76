"""Liveness, readiness and health probes on the main port."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

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


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> JSONResponse:
    """Every dependency, one by one."""
    checks: dict[str, str] = {}
    try:
        await platform.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503
    )
