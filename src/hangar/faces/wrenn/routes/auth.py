"""`/v1/auth/*`: signup, login and switching teams."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hangar.core.identity import rules
from hangar.faces.wrenn import ids, render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import AuthDep, UserDep
from hangar.web.deps import SessionDep
from hangar.web.throttle import ThrottleDep

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/signup", status_code=201, response_model=w.AuthResponse)
async def signup(
    body: w.SignupRequest,
    request: Request,
    auth: AuthDep,
    session: SessionDep,
    throttle: ThrottleDep,
) -> w.AuthResponse:
    """Create an account with a personal team and sign in."""
    await throttle.attempt(request, "signup", rules.email_lookup_key(body.email))
    signed = await auth.signup(body.email, body.password, body.name)
    return render.auth(signed)


@router.post("/login", response_model=w.AuthResponse)
async def login(
    body: w.LoginRequest, request: Request, auth: AuthDep, throttle: ThrottleDep
) -> w.AuthResponse:
    """Sign in with email and password."""
    # Counted before the password is checked, so concurrent guesses are counted too.
    await throttle.attempt(request, "login", rules.email_lookup_key(body.email))
    return render.auth(await auth.login(body.email, body.password))


@router.post("/switch-team", response_model=w.AuthResponse)
async def switch_team(
    body: w.SwitchTeamRequest,
    request: Request,
    principal: UserDep,
    auth: AuthDep,
    throttle: ThrottleDep,
) -> w.AuthResponse:
    """A new token scoped to another of the caller's teams."""
    await throttle.attempt(request, "switch-team", principal.user_id)
    signed = await auth.switch_team(principal, ids.decode(ids.TEAM, body.team_id))
    return render.auth(signed)
