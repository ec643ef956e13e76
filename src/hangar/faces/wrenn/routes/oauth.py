"""`/v1/auth/oauth/{provider}`: browser sign-in through GitHub."""

from __future__ import annotations

from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from hangar.core.auth.oauth import OAuthLogin, provider_or_404
from hangar.core.errors import DomainError, UpstreamError
from hangar.faces.wrenn import render
from hangar.faces.wrenn.deps import AuthDep, SettingsDep
from hangar.web.deps import PlatformDep, SessionDep
from hangar.web.throttle import per_address

router = APIRouter(prefix="/v1/auth/oauth", tags=["auth"])
log = structlog.get_logger("hangar.faces.wrenn.oauth")
STATE_COOKIE = "oauth_state"


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https" or (
        request.headers.get("x-forwarded-proto", "").lower() == "https"
    )


def _callback_url(request: Request, platform_public_url: str | None, provider: str) -> str:
    # `request.url_for` resolves names on the outermost router, which differs between the main
    # port (face mounted under `/wrenn`) and a face port; the face app and root_path do not.
    root: str = request.scope.get("root_path", "")
    path = root + str(request.app.url_path_for("oauth_callback", provider=provider))
    if platform_public_url:
        return platform_public_url.rstrip("/") + path
    return f"{request.url.scheme}://{request.url.netloc}{path}"


def _frontend(
    request: Request, configured: str | None, provider: str, query: dict[str, str]
) -> str:
    base = (configured or str(request.base_url)).rstrip("/")
    return f"{base}/auth/{provider}/callback?{urlencode(sorted(query.items()))}"


@router.get("/{provider}", status_code=302, response_class=RedirectResponse)
async def oauth_redirect(
    provider: str, request: Request, platform: PlatformDep
) -> RedirectResponse:
    """Send the browser to the provider, with a CSRF state cookie."""
    prov = provider_or_404(platform.oauth_providers, provider)
    state, cookie = platform.oauth_states.new(provider)
    url = prov.authorize_url(state, _callback_url(request, platform.settings.public_url, provider))
    resp = RedirectResponse(url, status_code=302)
    resp.set_cookie(
        STATE_COOKIE,
        cookie,
        max_age=600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_is_https(request),
    )
    return resp


@router.get(
    "/{provider}/callback",
    name="oauth_callback",
    status_code=302,
    response_class=RedirectResponse,
    dependencies=[Depends(per_address)],
)
async def oauth_callback(
    provider: str,
    request: Request,
    platform: PlatformDep,
    settings: SettingsDep,
    auth: AuthDep,
    session: SessionDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> RedirectResponse:
    """Finish sign-in and redirect to the frontend with a token, or with an error code."""
    prov = provider_or_404(platform.oauth_providers, provider)

    def done(query: dict[str, str]) -> RedirectResponse:
        url = _frontend(request, settings.oauth_redirect_url, provider, query)
        resp = RedirectResponse(url, status_code=302)
        resp.delete_cookie(STATE_COOKIE, path="/")
        return resp

    if error:
        return done({"error": "access_denied"})
    try:
        platform.oauth_states.check(provider, state, request.cookies.get(STATE_COOKIE))
    except DomainError:
        return done({"error": "invalid_state"})
    if not code:
        return done({"error": "missing_code"})
    callback = _callback_url(request, platform.settings.public_url, provider)
    try:
        profile = await prov.exchange(code, callback)
    except UpstreamError as exc:
        log.warning("oauth exchange failed", provider=provider, reason=exc.message)
        return done({"error": "exchange_failed"})
    try:
        signed = await OAuthLogin(auth).sign_in(provider, profile)
    except DomainError as exc:
        await session.rollback()
        return done({"error": "email_taken" if exc.code == "email_taken" else "internal_error"})
    wire = render.auth(signed)
    return done(
        {
            "token": wire.token,
            "user_id": wire.user_id,
            "team_id": wire.team_id,
            "email": wire.email,
            "name": wire.name,
        }
    )
