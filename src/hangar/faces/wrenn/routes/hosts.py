"""`/v1/hosts`: hosts, their registration and credentials, heartbeats and tags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from hangar.core.errors import Unauthenticated
from hangar.core.hosts.service import HostHasCapsules, HostService
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import render_hosts as render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import UserDep
from hangar.web.deps import PlatformDep, SessionDep
from hangar.web.services import CapsulesDep
from hangar.web.throttle import per_address

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])


async def get_hosts(
    platform: PlatformDep, session: SessionDep, capsules: CapsulesDep
) -> HostService:
    """Host service for this request."""
    return HostService(session, platform.signer, platform.settings.hosts, capsules)


HostsDep = Annotated[HostService, Depends(get_hosts)]


def _id(wire_id: str) -> str:
    return ids.decode(ids.HOST, wire_id)


@router.post("", status_code=201, response_model=w.CreateHostResponse)
async def create_host(
    body: w.CreateHostRequest, principal: UserDep, hosts: HostsDep, session: SessionDep
) -> w.CreateHostResponse:
    """A pending host and its one-time registration token (valid 1 h)."""
    team_id = ids.decode(ids.TEAM, body.team_id) if body.team_id is not None else None
    made = await hosts.create(principal, body.type, team_id, body.provider, body.availability_zone)
    return w.CreateHostResponse(host=render.host(made.host), registration_token=made.token)


@router.get("", response_model=list[w.Host])
async def list_hosts(principal: UserDep, hosts: HostsDep) -> list[w.Host]:
    """Every host for platform admins; the team's BYOC hosts for others."""
    return [render.host(h) for h in await hosts.list_visible(principal)]


@router.post(
    "/register",
    status_code=201,
    response_model=w.HostCredentials,
    dependencies=[Depends(per_address)],
)
async def register_host(
    body: w.RegisterHostRequest, hosts: HostsDep, session: SessionDep
) -> w.HostCredentials:
    """An agent's first call: spend the registration token, get a host JWT and refresh token."""
    creds = await hosts.register(
        body.token,
        address=body.address,
        arch=body.arch,
        cpu_cores=body.cpu_cores,
        memory_mb=body.memory_mb,
        disk_gb=body.disk_gb,
    )
    return render.credentials(creds)


@router.post("/auth/refresh", response_model=w.HostCredentials, dependencies=[Depends(per_address)])
async def refresh_host_token(
    body: w.RefreshHostTokenRequest, hosts: HostsDep, session: SessionDep
) -> w.HostCredentials:
    """Rotate a refresh token: a new JWT and refresh token; the old one is dead at once."""
    creds = await hosts.refresh(body.refresh_token)
    return render.credentials(creds)


@router.get("/{id}", response_model=w.Host)
async def get_host(id: str, principal: UserDep, hosts: HostsDep) -> w.Host:
    """One host."""
    return render.host(await hosts.get(principal, _id(id)))


@router.delete("/{id}", status_code=204, response_model=None)
async def delete_host(
    id: str,
    principal: UserDep,
    hosts: HostsDep,
    session: SessionDep,
    force: Annotated[bool, Query()] = False,
) -> Response:
    """Delete a host; 409 listing its capsules unless `force=true` destroys them first."""
    try:
        await hosts.delete(principal, _id(id), force=force)
    except HostHasCapsules as exc:
        await session.rollback()
        sandbox_ids = [ids.encode(ids.CAPSULE, c) for c in exc.capsule_ids]
        error = {"code": exc.code, "message": exc.message, "sandbox_ids": sandbox_ids}
        return JSONResponse({"error": error}, status_code=409)
    return Response(status_code=204)


@router.get("/{id}/delete-preview", response_model=w.HostDeletePreview)
async def host_delete_preview(id: str, principal: UserDep, hosts: HostsDep) -> w.HostDeletePreview:
    """The capsules a forced delete would destroy; changes nothing."""
    host, capsule_ids = await hosts.delete_preview(principal, _id(id))
    return w.HostDeletePreview(
        host=render.host(host), sandbox_ids=[ids.encode(ids.CAPSULE, c) for c in capsule_ids]
    )


@router.post("/{id}/token", status_code=201, response_model=w.CreateHostResponse)
async def regenerate_host_token(
    id: str, principal: UserDep, hosts: HostsDep, session: SessionDep
) -> w.CreateHostResponse:
    """A fresh registration token for a host still pending; earlier ones stop working."""
    made = await hosts.regenerate_token(principal, _id(id))
    return w.CreateHostResponse(host=render.host(made.host), registration_token=made.token)


@router.post("/{id}/heartbeat", status_code=204, response_model=None)
async def host_heartbeat(
    id: str,
    hosts: HostsDep,
    session: SessionDep,
    x_host_token: Annotated[str | None, Header()] = None,
) -> Response:
    """An agent says it is alive (X-Host-Token; it may only speak for its own host)."""
    if not x_host_token:
        raise Unauthenticated("X-Host-Token required")
    # The URL's id is compared in the core: a malformed one simply does not match the token.
    await hosts.heartbeat(x_host_token, _id(id))
    return Response(status_code=204)


@router.get("/{id}/tags", response_model=list[str])
async def list_host_tags(id: str, principal: UserDep, hosts: HostsDep) -> list[str]:
    """A host's tags, sorted."""
    return await hosts.tags(principal, _id(id))


@router.post("/{id}/tags", status_code=204, response_model=None)
async def add_host_tag(
    id: str, body: w.AddTagRequest, principal: UserDep, hosts: HostsDep, session: SessionDep
) -> Response:
    """Tag a host (idempotent)."""
    await hosts.add_tag(principal, _id(id), body.tag)
    return Response(status_code=204)


@router.delete("/{id}/tags/{tag}", status_code=204, response_model=None)
async def remove_host_tag(
    id: str, tag: str, principal: UserDep, hosts: HostsDep, session: SessionDep
) -> Response:
    """Untag a host (idempotent)."""
    await hosts.remove_tag(principal, _id(id), tag)
    return Response(status_code=204)
