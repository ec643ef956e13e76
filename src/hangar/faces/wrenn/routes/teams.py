"""`/v1/teams/*`: teams and their members."""

from __future__ import annotations

from fastapi import APIRouter, Response

from hangar.core.capsules.teardown import destroy_team_capsules
from hangar.core.db.uow import checkpoint
from hangar.core.identity.models import Role
from hangar.faces.wrenn import ids, render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import TeamsDep, UserDep
from hangar.web.deps import SessionDep
from hangar.web.services import CapsulesDep

router = APIRouter(prefix="/v1/teams", tags=["teams"])


@router.get("", response_model=list[w.TeamWithRole])
async def list_teams(principal: UserDep, teams: TeamsDep) -> list[w.TeamWithRole]:
    """Teams the caller belongs to, with their role in each."""
    found = await teams.list_for_user(principal.require_user())
    return [render.team_with_role(a.team, a.membership) for a in found]


@router.post("", status_code=201, response_model=w.TeamWithRole)
async def create_team(
    body: w.TeamNameRequest, principal: UserDep, teams: TeamsDep, session: SessionDep
) -> w.TeamWithRole:
    """Create a team owned by the caller."""
    acc = await teams.create(principal.require_user(), body.name)
    return render.team_with_role(acc.team, acc.membership)


@router.get("/{id}", response_model=w.TeamDetail)
async def get_team(id: str, principal: UserDep, teams: TeamsDep) -> w.TeamDetail:
    """The team and its members."""
    team_id = ids.decode(ids.TEAM, id)
    acc = await teams.access(principal, team_id)
    members = await teams.members(principal, team_id)
    return w.TeamDetail(
        team=render.team(acc.team), members=[render.member(m, u) for m, u in members]
    )


@router.patch("/{id}", status_code=204)
async def rename_team(
    id: str,
    body: w.TeamNameRequest,
    principal: UserDep,
    teams: TeamsDep,
    session: SessionDep,
) -> Response:
    """Rename the team (admin or owner)."""
    await teams.rename(principal, ids.decode(ids.TEAM, id), body.name)
    return Response(status_code=204)


@router.delete("/{id}", status_code=204)
async def delete_team(
    id: str,
    principal: UserDep,
    teams: TeamsDep,
    capsules: CapsulesDep,
    session: SessionDep,
) -> Response:
    """Soft-delete the team (owner only), revoke its tokens and keys, destroy its capsules."""
    team_id = ids.decode(ids.TEAM, id)
    await teams.delete(principal, team_id)
    await checkpoint(session)  # from here every credential of the team is refused
    await destroy_team_capsules(capsules, team_id)
    return Response(status_code=204)


@router.get("/{id}/members", response_model=list[w.TeamMember])
async def list_members(
    id: str,
    principal: UserDep,
    teams: TeamsDep,
) -> list[w.TeamMember]:
    """Members with their roles."""
    members = await teams.members(principal, ids.decode(ids.TEAM, id))
    return [render.member(m, u) for m, u in members]


@router.post("/{id}/members", status_code=201, response_model=w.TeamMember)
async def add_member(
    id: str,
    body: w.AddMemberRequest,
    principal: UserDep,
    teams: TeamsDep,
    session: SessionDep,
) -> w.TeamMember:
    """Add an existing account as a member (admin or owner)."""
    membership, user = await teams.add_member(principal, ids.decode(ids.TEAM, id), body.email)
    return render.member(membership, user)


@router.patch("/{id}/members/{uid}", status_code=204)
async def update_member_role(
    id: str,
    uid: str,
    body: w.UpdateRoleRequest,
    principal: UserDep,
    teams: TeamsDep,
    session: SessionDep,
) -> Response:
    """Change a member's role to admin or member (admin or owner; never the owner's)."""
    await teams.set_role(
        principal, ids.decode(ids.TEAM, id), ids.decode(ids.USER, uid), Role(body.role)
    )
    return Response(status_code=204)


@router.delete("/{id}/members/{uid}", status_code=204)
async def remove_member(
    id: str,
    uid: str,
    principal: UserDep,
    teams: TeamsDep,
    session: SessionDep,
) -> Response:
    """Remove a member (admin or owner; never the owner)."""
    await teams.remove_member(principal, ids.decode(ids.TEAM, id), ids.decode(ids.USER, uid))
    return Response(status_code=204)


@router.post("/{id}/leave", status_code=204)
async def leave_team(
    id: str,
    principal: UserDep,
    teams: TeamsDep,
    session: SessionDep,
) -> Response:
    """Leave the team (not for the owner)."""
    await teams.leave(principal, ids.decode(ids.TEAM, id))
    return Response(status_code=204)
