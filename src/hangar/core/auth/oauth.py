"""Signing in through an OAuth provider (GitHub today): state, code exchange, accounts."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from hangar.core.auth.service import AuthService, SignedIn
from hangar.core.config import GitHubOAuthSettings
from hangar.core.errors import Conflict, InvalidInput, NotFound, UpstreamError
from hangar.core.identity import rules
from hangar.core.security.jwt import TokenSigner
from hangar.core.security.outbound import OPERATOR_ENDPOINT

STATE_AUDIENCE = "hangar:oauth-state"
STATE_TTL_SECONDS = 600


@dataclass(frozen=True, slots=True)
class OAuthProfile:
    """What we learn about a person from the provider."""

    subject: str
    email: str
    name: str


class GitHubProvider:
    """GitHub's OAuth web flow. Endpoints come from settings so tests can stand in for GitHub.

    Its requests are marked as going to operator-configured endpoints: `http` (the outbound
    guard's client) lets them through to exactly those origins, wherever they are.
    """

    name = "github"

    def __init__(self, settings: GitHubOAuthSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        """Where to send the browser to ask the user for consent."""
        query = urlencode(
            {
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
            }
        )
        return f"{self.settings.authorize_url}?{query}"

    async def exchange(self, code: str, redirect_uri: str) -> OAuthProfile:
        """Trade an authorization code for the user's profile; UpstreamError on any failure."""
        try:
            token_resp = await self.http.post(
                self.settings.token_url,
                data={
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret.get_secret_value(),
                    "code": code,
                    "redirect_uri": redirect_uri,
                },
                headers={"Accept": "application/json"},
                extensions=OPERATOR_ENDPOINT,
            )
            token_resp.raise_for_status()
            access_token = token_resp.json().get("access_token")
            if not access_token:
                raise UpstreamError("provider returned no access token")
            auth = {
                "Authorization": f"Bearer {access_token}",
                "Accept": "application/vnd.github+json",
            }
            user_resp = await self.http.get(
                f"{self.settings.api_url}/user", headers=auth, extensions=OPERATOR_ENDPOINT
            )
            user_resp.raise_for_status()
            user: dict[str, Any] = user_resp.json()
            email = user.get("email")
            if not email:
                emails_resp = await self.http.get(
                    f"{self.settings.api_url}/user/emails",
                    headers=auth,
                    extensions=OPERATOR_ENDPOINT,
                )
                emails_resp.raise_for_status()
                email = next(
                    (
                        e.get("email")
                        for e in emails_resp.json()
                        if e.get("primary") and e.get("verified")
                    ),
                    None,
                )
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError(f"code exchange failed: {exc}") from exc
        if not email or "id" not in user:
            raise UpstreamError("provider returned no verified email")
        return OAuthProfile(
            subject=str(user["id"]),
            email=str(email),
            name=str(user.get("name") or user.get("login") or email.split("@")[0]),
        )


class OAuthStates:
    """CSRF state for the redirect round trip, carried in a signed, short-lived cookie."""

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer

    def new(self, provider: str) -> tuple[str, str]:
        """A fresh state value and the signed cookie that vouches for it."""
        state = secrets.token_hex(16)
        cookie = self.signer.issue(STATE_AUDIENCE, state, STATE_TTL_SECONDS, provider=provider)
        return state, cookie

    def check(self, provider: str, state: str | None, cookie: str | None) -> None:
        """InvalidInput unless the state matches the cookie issued for this provider."""
        if not state or not cookie:
            raise InvalidInput("missing OAuth state", code="invalid_state")
        try:
            claims = self.signer.verify(cookie, STATE_AUDIENCE)
        except Exception as exc:
            raise InvalidInput("invalid OAuth state", code="invalid_state") from exc
        if claims.get("provider") != provider or not secrets.compare_digest(
            str(claims["sub"]), state
        ):
            raise InvalidInput("OAuth state mismatch", code="invalid_state")


class OAuthLogin:
    """Maps a provider profile to a Hangar account, creating one on first sign-in."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth

    async def sign_in(self, provider: str, profile: OAuthProfile) -> SignedIn:
        """Sign in the linked account, or create one; an email held by another is refused."""
        user = await self.auth.users.get_by_identity(provider, profile.subject)
        if user is None:
            try:
                email = rules.normalize_email(profile.email)
            except InvalidInput as exc:
                raise UpstreamError("provider returned an unusable email") from exc
            if await self.auth.users.email_taken(email):
                raise Conflict("email already registered", code="email_taken")
            name = rules.check_user_name(profile.name[: rules.MAX_USER_NAME_LENGTH] or "user")
            user, _team, _m = await self.auth.create_account(email, name, password_hash=None)
            await self.auth.users.link_identity(user.id, provider, profile.subject)
        return await self.auth.sign_in_default(user)


def provider_or_404(providers: dict[str, GitHubProvider], name: str) -> GitHubProvider:
    """The configured provider called `name`."""
    provider = providers.get(name)
    if provider is None:
        raise NotFound("unsupported OAuth provider", code="provider_not_found")
    return provider
