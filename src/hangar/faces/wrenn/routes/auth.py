"""`/v1/auth/*`: signup, login and switching teams."""

from __future__ import annotations

from fastapi import APIRouter

from hangar.faces.wrenn import ids, render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import AuthDep, UserDep
from hangar.web.deps import SessionDep

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/signup", status_code=201, response_model=w.AuthResponse)
async def signup(body: w.SignupRequest, auth: AuthDep, session: SessionDep) -> w.AuthResponse:
    """Create an account with a personal team and sign in."""
    signed = await auth.signup(body.email, body.password, body.name)
    await session.commit()
    return render.auth(signed)


@router.post("/login", response_model=w.AuthResponse)
async def login(body: w.LoginRequest, auth: AuthDep) -> w.AuthResponse:
    """Sign in with email and password."""
    return render.auth(await auth.login(body.email, body.password))


@router.post("/switch-team", response_model=w.AuthResponse)
async def switch_team(
    body: w.SwitchTeamRequest, principal: UserDep, auth: AuthDep
) -> w.AuthResponse:
    """A new token scoped to another of the caller's teams."""
    signed = await auth.switch_team(principal, ids.decode(ids.TEAM, body.team_id))
    return render.auth(signed)
