"""`/v1/snapshots`: snapshot templates."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from hangar.core.capsules.models import TemplateKind
from hangar.core.snapshots.modes import TEMPLATE
from hangar.core.snapshots.templates import TemplateView
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import render_capsules as render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import KeyOrUserDep
from hangar.web.deps import SessionDep
from hangar.web.services import SnapshotsDep

router = APIRouter(prefix="/v1/snapshots", tags=["snapshots"])


@router.post("", status_code=201, response_model=w.Template, response_model_exclude_none=True)
async def create_snapshot(
    body: w.CreateSnapshotRequest,
    principal: KeyOrUserDep,
    snapshots: SnapshotsDep,
    session: SessionDep,
    overwrite: Annotated[Literal["true"] | None, Query()] = None,
) -> w.Template:
    """Save a capsule as a template (the capsule is destroyed, as in Wrenn)."""
    made = await snapshots.take(
        principal.require_team(),
        ids.decode(ids.CAPSULE, body.sandbox_id),
        body.name or None,  # Wrenn: an empty name is no name
        mode=TEMPLATE,
        overwrite=overwrite == "true",
    )
    return render.template(TemplateView.of_snapshot(made))


@router.get("", response_model=list[w.Template], response_model_exclude_none=True)
async def list_snapshots(
    principal: KeyOrUserDep,
    snapshots: SnapshotsDep,
    type: Annotated[Literal["base", "snapshot"] | None, Query()] = None,
) -> list[w.Template]:
    """Base templates and the team's snapshots."""
    kind = TemplateKind(type) if type else None
    return [
        render.template(v) for v in await snapshots.list_templates(principal.require_team(), kind)
    ]


@router.delete("/{name}", status_code=204)
async def delete_snapshot(
    name: str, principal: KeyOrUserDep, snapshots: SnapshotsDep, session: SessionDep
) -> Response:
    """Delete a snapshot template and its files."""
    await snapshots.delete(principal.require_team(), name)
    return Response(status_code=204)
