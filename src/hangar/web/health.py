"""Liveness, readiness and health probes on the main port.

Probes answer anyone, so they say what is wrong in generic words; the details go to the log.
The agents check counts only regular hosts: BYOC hosts are tenants' machines, and one of them
going away must never make the platform unhealthy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskGroup
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hangar.core.fleet.gateway import AgentHandle
from hangar.core.hosts.models import HostStatus, HostType
from hangar.core.hosts.repository import HostRepository
from hangar.core.platform import Platform
from hangar.web.deps import PlatformDep

router = APIRouter(tags=["health"])
log = structlog.get_logger("hangar.web.health")
CHECK_TIMEOUT = 2.0  # seconds; a probe must answer well before a load balancer gives up
OK = "ok"
ERROR = "error"


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(platform: PlatformDep) -> JSONResponse:
    """Ready for traffic: the database answers."""
    if await database_check(platform) != OK:
        return JSONResponse({"status": "unavailable", "database": ERROR}, status_code=503)
    return JSONResponse({"status": "ok"})


async def database_check(platform: Platform, timeout: float = CHECK_TIMEOUT) -> str:
    """`ok`, or `error` when the database does not answer within `timeout`."""
    try:
        with anyio.fail_after(timeout):
            await platform.db.ping()
    except Exception:
        log.warning("health: the database does not answer", exc_info=True)
        return ERROR
    return OK


async def agents_check(platform: Platform, timeout: float = CHECK_TIMEOUT) -> str:
    """`ok` while a regular host is online, or one of this replica's regular agents answers.

    Host rows are the fleet's view (every replica's heartbeats); the agents connected here are
    asked only when no row says online, so a silent or slow agent never blocks the probe.
    """
    try:
        with anyio.fail_after(timeout):
            async with platform.db.session() as session:
                hosts = await HostRepository(session).list_hosts()
    except Exception:
        log.warning("health: cannot read the hosts", exc_info=True)
        return ERROR
    regular = {h.id for h in hosts if h.type == HostType.REGULAR}
    if any(h.status == HostStatus.ONLINE for h in hosts if h.id in regular):
        return OK
    handles = [h for h in platform.fleet.hosts() if h.host_id in regular]
    if handles and await any_answers(handles, timeout):
        return OK
    log.warning("health: no regular host online", connected=len(handles))
    return ERROR


async def any_answers(handles: list[AgentHandle], timeout: float) -> bool:
    """Whether one of these agents answers `info` within `timeout` (all are asked at once)."""
    answered = False

    async def probe(handle: AgentHandle, group: TaskGroup) -> None:
        nonlocal answered
        try:
            await handle.client.info()
        except Exception:
            log.info("health: agent does not answer", host_id=handle.host_id, exc_info=True)
            return
        answered = True
        group.cancel_scope.cancel()

    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as group:
            for handle in handles:
                group.start_soon(probe, handle, group)
    return answered


async def run_checks(
    platform: Platform, checks: dict[str, Callable[[Platform], Awaitable[str]]]
) -> dict[str, str]:
    """Every check at once; name -> `ok` or `error`, in the order given."""
    results: dict[str, str] = {}

    async def run(name: str, check: Callable[[Platform], Awaitable[str]]) -> None:
        results[name] = await check(platform)

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    return {name: results[name] for name in checks}


def missing_programs(platform: Platform) -> dict[str, list[dict[str, str]]]:
    """Connected agents lacking programs their runtime needs: host id -> what, how to install.

    Only agents connected to this replica, as they last said (no agent is asked here). Named
    outright, unlike other failures: an operator can do nothing without the package names.
    """
    return {
        h.host_id: [{"program": p.program, "install_hint": p.install_hint} for p in h.missing]
        for h in platform.fleet.hosts()
        if h.missing
    }


@router.get("/healthz")
async def healthz(platform: PlatformDep) -> JSONResponse:
    """Every dependency of the platform itself (the database), and its hosts' programs."""
    checks = await run_checks(platform, {"database": database_check})
    body: dict[str, object] = {"checks": checks}
    if missing := missing_programs(platform):
        checks["host_programs"] = ERROR
        body["missing_programs"] = missing
    ok = all(v == OK for v in checks.values())
    body = {"status": "ok" if ok else "degraded", **body}
    return JSONResponse(body, status_code=200 if ok else 503)
