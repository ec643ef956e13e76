"""`/v1/snapshots`: snapshots of VMs (disk state; the firewall policy travels with them)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path

from hangar.core.errors import Conflict, InvalidInput, Unavailable, UpstreamError
from hangar.core.quotas.rules import QuotaExceeded
from hangar.core.snapshots.modes import SNAPSHOT
from hangar.faces.fastvm import render
from hangar.faces.fastvm import schemas as f
from hangar.faces.fastvm.deps import OrgDep
from hangar.faces.fastvm.errors import documented_as
from hangar.web.deps import SessionDep
from hangar.web.services import SnapshotsDep

router = APIRouter(prefix="/v1/snapshots", tags=["Snapshots"])
SnapshotId = Annotated[uuid.UUID, Path(alias="id")]


@router.post("", status_code=201, response_model=f.SnapshotObject, response_model_exclude_none=True)
async def create_snapshot(
    body: f.CreateSnapshotRequest, org: OrgDep, snapshots: SnapshotsDep, session: SessionDep
) -> f.SnapshotObject:
    """Snapshot a running VM (it keeps running); `ready`, or `error` if the host failed."""
    # createSnapshot documents no 403: a full snapshot quota is a conflict with the org's state.
    # A host that is not connected is 502: createSnapshot lists no 503.
    with documented_as(QuotaExceeded, Conflict), documented_as(Unavailable, UpstreamError):
        template = await snapshots.take(org, str(body.vm_id), body.name, mode=SNAPSHOT)
    return render.snapshot(template)


@router.get("", response_model=list[f.SnapshotObject], response_model_exclude_none=True)
async def list_snapshots(org: OrgDep, snapshots: SnapshotsDep) -> list[f.SnapshotObject]:
    """The organization's snapshots."""
    return [render.snapshot(t) for t in await snapshots.list_snapshots(org)]


@router.patch("/{id}", response_model=f.SnapshotObject, response_model_exclude_none=True)
async def update_snapshot(
    id: SnapshotId,
    body: f.UpdateSnapshotRequest,
    org: OrgDep,
    snapshots: SnapshotsDep,
    session: SessionDep,
) -> f.SnapshotObject:
    """Rename a snapshot."""
    with documented_as(Conflict, InvalidInput):  # a name taken: updateSnapshot has no 409
        template = await snapshots.rename_snapshot(org, str(id), body.name)
    return render.snapshot(template)


@router.delete("/{id}", response_model=f.DeleteResponse, response_model_exclude_none=True)
async def delete_snapshot(
    id: SnapshotId, org: OrgDep, snapshots: SnapshotsDep, session: SessionDep
) -> f.DeleteResponse:
    """Delete a snapshot and its files."""
    # Still used by VMs, or its host is down: deleteSnapshot lists no 409, 502 or 503.
    with (
        documented_as(Conflict, InvalidInput),
        documented_as(Unavailable, InvalidInput),
        documented_as(UpstreamError, InvalidInput),
    ):
        await snapshots.delete_snapshot(org, str(id))
    return f.DeleteResponse(id=str(id), deleted=True)
