"""`/v1/vms`: VM lifecycle, firewall and exec."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from hangar.core.capsules.models import CapsuleStatus
from hangar.core.errors import Conflict, InvalidInput, NotFound, Unavailable, UpstreamError
from hangar.faces.fastvm import render
from hangar.faces.fastvm import schemas as f
from hangar.faces.fastvm.deps import OrgDep, SettingsDep
from hangar.faces.fastvm.errors import documented_as
from hangar.web.deps import SessionDep
from hangar.web.disconnect import CLIENT_CLOSED_REQUEST, ClientGone, unless_disconnected
from hangar.web.pagination import PageDep, page_headers
from hangar.web.services import CapsulesDep

router = APIRouter(prefix="/v1/vms", tags=["VMs"])
VMId = Annotated[uuid.UUID, Path(alias="id")]


def host_down_as_502() -> contextlib.AbstractContextManager[None]:
    """A host that is not connected as 502: these operations list 502 but no 503."""
    return documented_as(Unavailable, UpstreamError)


@router.get("", response_model=list[f.VMInstance], response_model_exclude_none=True)
async def list_vms(
    org: OrgDep, capsules: CapsulesDep, page: PageDep, response: Response
) -> list[f.VMInstance]:
    """The organization's VMs, newest first (`limit`/`offset` are extras; total in a header)."""
    found = await capsules.page_for_team(org, page)
    page_headers(response, found)
    return [render.vm(c) for c in found.items]


@router.post(
    "",
    status_code=201,
    response_model=f.VMInstance,
    responses={202: {"model": f.VMInstance, "description": "Queued for capacity"}},
    response_model_exclude_none=True,
)
async def create_vm(
    body: f.CreateVMRequest,
    org: OrgDep,
    capsules: CapsulesDep,
    session: SessionDep,
    response: Response,
) -> f.VMInstance:
    """Start a VM of a machine type, or from a snapshot; 202 while it waits for capacity."""
    firewall = render.core_policy(body.firewall)
    if body.snapshot_id is not None:
        # createVM documents no 404: a snapshotId naming no snapshot of the org is bad input.
        with documented_as(NotFound, InvalidInput):
            capsule = await capsules.create_from_snapshot(
                org,
                str(body.snapshot_id),
                name=body.name,
                disk_gb=body.disk_gib,
                firewall=firewall,
                queue=True,
            )
    else:
        assert body.machine_type is not None  # CreateVMRequest asks for one of the two
        capsule = await capsules.create_vm(
            org,
            machine_type=body.machine_type,
            name=body.name,
            disk_gb=body.disk_gib,
            firewall=firewall,
            queue=True,
        )
    if capsule.status != CapsuleStatus.RUNNING:
        response.status_code = 202
    return render.vm(capsule)


@router.get("/{id}", response_model=f.VMInstance, response_model_exclude_none=True)
async def get_vm(id: VMId, org: OrgDep, capsules: CapsulesDep) -> f.VMInstance:
    """One VM; a deleted one is still shown, `stopped` with its `deletedAt`."""
    return render.vm(await capsules.get(org, str(id), include_destroyed=True))


@router.patch("/{id}", response_model=f.VMInstance, response_model_exclude_none=True)
async def update_vm(
    id: VMId, body: f.UpdateVMRequest, org: OrgDep, capsules: CapsulesDep, session: SessionDep
) -> f.VMInstance:
    """Rename a VM."""
    capsule = await capsules.rename(org, str(id), body.name)
    return render.vm(capsule)


@router.delete("/{id}", response_model=f.DeleteResponse, response_model_exclude_none=True)
async def delete_vm(
    id: VMId, org: OrgDep, capsules: CapsulesDep, session: SessionDep
) -> f.DeleteResponse:
    """Delete a VM; from then on it is only readable (a second delete is 404)."""
    # A refusal of the host (no 409 listed for deleteVM) is the host failing: 502.
    with host_down_as_502(), documented_as(Conflict, UpstreamError):
        capsule = await capsules.destroy(org, str(id))
    return f.DeleteResponse(id=capsule.id, deleted=True, deleted_at=capsule.destroyed_at)


@router.put("/{id}/firewall", response_model=f.VMInstance, response_model_exclude_none=True)
async def replace_firewall(
    id: VMId, body: f.FirewallPolicy, org: OrgDep, capsules: CapsulesDep, session: SessionDep
) -> f.VMInstance:
    """Replace the VM's IPv6 ingress policy (`ingress` omitted means no rules)."""
    policy = render.core_policy(body)
    assert policy is not None
    # Conflict: e.g. a capsule without networking.
    with host_down_as_502(), documented_as(Conflict, InvalidInput):
        capsule = await capsules.set_firewall(org, str(id), policy)
    return render.vm(capsule)


@router.patch("/{id}/firewall", response_model=f.VMInstance, response_model_exclude_none=True)
async def patch_firewall(
    id: VMId,
    body: f.PatchVMFirewallRequest,
    org: OrgDep,
    capsules: CapsulesDep,
    session: SessionDep,
) -> f.VMInstance:
    """Change the fields given of the VM's IPv6 ingress policy; the others are kept."""
    # Conflict: e.g. a capsule without networking.
    with host_down_as_502(), documented_as(Conflict, InvalidInput):
        capsule = await capsules.patch_firewall(org, str(id), body.mode, render.rules(body.ingress))
    return render.vm(capsule)


@router.post("/{id}/exec", response_model=f.ExecVMResponse)
async def exec_vm(
    id: VMId,
    body: f.ExecVMRequest,
    org: OrgDep,
    capsules: CapsulesDep,
    settings: SettingsDep,
    session: SessionDep,
    request: Request,
) -> f.ExecVMResponse | Response:
    """Run a command to completion (killed after `timeoutSec`, or when the client leaves);
    409 unless the VM runs."""
    timeout = (
        body.timeout_sec if body.timeout_sec is not None else settings.default_exec_timeout_sec
    )
    try:
        with host_down_as_502():
            outcome = await unless_disconnected(
                request, capsules.exec(org, str(id), body.command, timeout)
            )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it
    return render.exec_response(outcome)
