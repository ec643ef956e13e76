"""`/v1/capsules`: lifecycle, exec, ping, metrics, pause/resume, stats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from hangar.core.capsules.rules import command_argv
from hangar.core.errors import InvalidInput
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import render_capsules as render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import KeyOrUserDep, UsageDep
from hangar.web.deps import SessionDep
from hangar.web.disconnect import CLIENT_CLOSED_REQUEST, ClientGone, unless_disconnected
from hangar.web.pagination import PageDep, page_headers
from hangar.web.services import CapsulesDep

router = APIRouter(prefix="/v1/capsules", tags=["capsules"])


def _id(wire_id: str) -> str:
    return ids.decode(ids.CAPSULE, wire_id)


@router.post("", status_code=201, response_model=w.Capsule, response_model_exclude_none=True)
async def create_capsule(
    principal: KeyOrUserDep,
    capsules: CapsulesDep,
    session: SessionDep,
    body: Annotated[w.CreateCapsuleRequest | None, Body()] = None,
) -> w.Capsule:
    """Start a capsule from a template."""
    body = body or w.CreateCapsuleRequest()
    capsule = await capsules.create(
        principal.require_team(),
        template=body.template,
        vcpus=body.vcpus,
        memory_mb=body.memory_mb,
        timeout_sec=body.timeout_sec,
    )
    return render.capsule(capsule)


@router.get("", response_model=list[w.Capsule], response_model_exclude_none=True)
async def list_capsules(
    principal: KeyOrUserDep, capsules: CapsulesDep, page: PageDep, response: Response
) -> list[w.Capsule]:
    """The team's capsules, newest first (`limit`/`offset` are extras; total in a header)."""
    found = await capsules.page_for_team(principal.require_team(), page)
    page_headers(response, found)
    return [render.capsule(c) for c in found.items]


@router.get("/stats", response_model=w.CapsuleStats, response_model_exclude_none=True)
async def capsule_stats(
    principal: KeyOrUserDep, usage: UsageDep, range: Annotated[str, Query()] = "1h"
) -> w.CapsuleStats:
    """Current reservation, 30-day peaks and a series over `range`."""
    return render.stats(await usage.stats(principal.require_team(), range))


@router.get("/{id}", response_model=w.Capsule, response_model_exclude_none=True)
async def get_capsule(id: str, principal: KeyOrUserDep, capsules: CapsulesDep) -> w.Capsule:
    """One capsule."""
    return render.capsule(await capsules.get(principal.require_team(), _id(id)))


@router.delete("/{id}", status_code=204)
async def destroy_capsule(
    id: str, principal: KeyOrUserDep, capsules: CapsulesDep, session: SessionDep
) -> Response:
    """Destroy a capsule and everything it ran."""
    await capsules.destroy(principal.require_team(), _id(id))
    return Response(status_code=204)


@router.post("/{id}/exec", response_model=w.ExecResponse)
async def exec_command(
    id: str,
    body: w.ExecRequest,
    request: Request,
    principal: KeyOrUserDep,
    capsules: CapsulesDep,
    session: SessionDep,
) -> w.ExecResponse | Response:
    """Run a command to completion (killed after `timeout_sec`, or when the client leaves)."""
    if body.background:
        # Refused, never run in the foreground instead: the client waits for a 202 and a pid.
        raise InvalidInput("background: background exec is not supported yet")
    try:
        outcome = await unless_disconnected(
            request,
            capsules.exec(
                principal.require_team(),
                _id(id),
                command_argv(body.cmd, body.args),
                body.timeout_sec,
                env=body.envs,
                cwd=body.cwd,
            ),
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it
    return render.exec_response(id, body.cmd, outcome)


@router.post("/{id}/ping", status_code=204)
async def ping_capsule(
    id: str, principal: KeyOrUserDep, capsules: CapsulesDep, session: SessionDep
) -> Response:
    """Reset the inactivity timer."""
    await capsules.ping(principal.require_team(), _id(id))
    return Response(status_code=204)


@router.get("/{id}/metrics", response_model=w.CapsuleMetrics)
async def capsule_metrics(
    id: str, principal: KeyOrUserDep, usage: UsageDep, range: Annotated[str, Query()] = "10m"
) -> w.CapsuleMetrics:
    """CPU, memory and disk over `range`."""
    points = await usage.metrics(principal.require_team(), _id(id), range)
    return render.metrics(id, range, points)


@router.post("/{id}/pause", response_model=w.Capsule, response_model_exclude_none=True)
async def pause_capsule(
    id: str, principal: KeyOrUserDep, capsules: CapsulesDep, session: SessionDep
) -> w.Capsule:
    """Freeze a running capsule; its memory and processes are kept."""
    capsule = await capsules.pause(principal.require_team(), _id(id))
    return render.capsule(capsule)


@router.post("/{id}/resume", response_model=w.Capsule, response_model_exclude_none=True)
async def resume_capsule(
    id: str, principal: KeyOrUserDep, capsules: CapsulesDep, session: SessionDep
) -> w.Capsule:
    """Thaw a paused capsule."""
    capsule = await capsules.resume(principal.require_team(), _id(id))
    return render.capsule(capsule)
