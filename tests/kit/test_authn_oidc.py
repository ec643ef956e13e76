"""OIDC bearer tokens against a JWKS served over HTTP (httpx's MockTransport: the wire)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.requests import Request

from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.platform import Platform
from hangar.web.authn import AuthChain, AuthContext
from hangar.web.authn.builtin import UserJwtAuthenticator
from hangar.web.authn.oidc import Claims, JwksCache, OidcAuthenticator
from support.live import make_settings

ISSUER = "https://idp.example"
AUDIENCE = "hangar"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"


class Issuer:
    """An identity provider: signing keys and the JWKS endpoint that publishes them."""

    def __init__(self) -> None:
        self.keys: list[Any] = [ECKey.generate_key("P-256", parameters={"kid": "k1"})]
        self.requests = 0

    def rotate(self, kid: str) -> ECKey:
        key = ECKey.generate_key("P-256", parameters={"kid": kid})
        self.keys.append(key)
        return key

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.requests += 1
        return httpx.Response(200, json=KeySet(self.keys).as_dict(private=False))

    def token(self, key: ECKey | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "idp-user-1", "exp": int(time.time()) + 600}
        body.update(claims)
        return jwt.encode({"alg": "ES256", "kid": key.kid}, body, key)


class Linked:
    """Links every identity of the issuer to one Hangar principal."""

    async def principal_for(self, claims: Claims, ctx: AuthContext) -> Principal | None:
        if claims["sub"] == "unlinked":
            return None
        return Principal(kind=CredentialKind.OIDC_TOKEN, team_id="t1", user_id=claims["sub"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[AuthContext]:
    platform = Platform(make_settings(tmp_path, None, None))
    async with platform.db.session() as session:
        yield AuthContext(session, platform)
    await platform.db.dispose()


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def oidc(issuer: Issuer, clock: Clock) -> AsyncIterator[OidcAuthenticator]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler)) as http:
        jwks = JwksCache(JWKS_URL, http, ttl=3600, min_refresh_interval=60, clock=clock)
        yield OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, principals=Linked())


def bearer(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


async def test_a_valid_token_authenticates_and_the_jwks_is_cached(
    oidc: OidcAuthenticator, issuer: Issuer, ctx: AuthContext
) -> None:
    for _ in range(3):
        principal = await oidc.authenticate(bearer(issuer.token()), ctx)
        assert principal is not None
        assert principal.user_id == "idp-user-1"
        assert principal.kind is CredentialKind.OIDC_TOKEN
    assert issuer.requests == 1


@pytest.mark.parametrize(
    ("changed", "dropped"),
    [
        ({"aud": "someone-else"}, None),
        ({"iss": ISSUER + "/"}, None),
        ({"exp": int(time.time()) - 3600}, None),
        ({}, "exp"),
        ({}, "aud"),
    ],
)
async def test_wrong_or_missing_claims_are_refused(
    oidc: OidcAuthenticator,
    ctx: AuthContext,
    issuer: Issuer,
    changed: dict[str, Any],
    dropped: str | None,
) -> None:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 600}
    body.update(changed)
    body.pop(dropped or "", None)
    token = jwt.encode({"alg": "ES256", "kid": "k1"}, body, issuer.keys[0])
    if body["iss"] != ISSUER:
        # Another issuer's token is not this authenticator's to judge.
        assert await oidc.authenticate(bearer(token), ctx) is None
        return
    with pytest.raises(Unauthenticated):
        await oidc.authenticate(bearer(token), ctx)


async def test_a_forged_signature_is_refused(
    oidc: OidcAuthenticator, issuer: Issuer, ctx: AuthContext
) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        await oidc.authenticate(bearer(issuer.token(impostor)), ctx)


async def test_a_rotated_key_is_fetched_once_and_unknown_kids_are_rate_limited(
    oidc: OidcAuthenticator, issuer: Issuer, clock: Clock, ctx: AuthContext
) -> None:
    assert await oidc.authenticate(bearer(issuer.token()), ctx) is not None
    clock.now += 61
    rotated = issuer.rotate("k2")
    assert await oidc.authenticate(bearer(issuer.token(rotated)), ctx) is not None
    assert issuer.requests == 2

    # Made-up kids: at most one refetch per interval, however many arrive.
    stranger = ECKey.generate_key("P-256", parameters={"kid": "made-up"})
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await oidc.authenticate(bearer(issuer.token(stranger)), ctx)
    assert issuer.requests == 2
    clock.now += 61
    with pytest.raises(Unauthenticated):
        await oidc.authenticate(bearer(issuer.token(stranger)), ctx)
    assert issuer.requests == 3


async def test_the_jwks_is_refetched_after_its_ttl(
    oidc: OidcAuthenticator, issuer: Issuer, clock: Clock, ctx: AuthContext
) -> None:
    await oidc.authenticate(bearer(issuer.token()), ctx)
    clock.now += 3601
    await oidc.authenticate(bearer(issuer.token()), ctx)
    assert issuer.requests == 2


async def test_other_issuers_tokens_pass_to_the_next_authenticator(
    oidc: OidcAuthenticator, issuer: Issuer, ctx: AuthContext
) -> None:
    assert await oidc.authenticate(bearer(issuer.token(iss="https://other.example")), ctx) is None
    assert await oidc.authenticate(bearer("not-a-jwt"), ctx) is None
    # In a chain, a Hangar JWT goes on to user_jwt (which refuses this forged one).
    chain = AuthChain([oidc, UserJwtAuthenticator()])
    with pytest.raises(Unauthenticated, match="invalid or expired token"):
        await chain.authenticate(bearer(issuer.token(iss="hangar")), ctx)
    assert issuer.requests == 0


async def test_an_unlinked_identity_is_refused(
    oidc: OidcAuthenticator, issuer: Issuer, ctx: AuthContext
) -> None:
    with pytest.raises(Unauthenticated) as refusal:
        await oidc.authenticate(bearer(issuer.token(sub="unlinked")), ctx)
    assert refusal.value.code == "not_linked"


async def test_an_unreachable_issuer_is_a_refusal_not_a_crash(ctx: AuthContext) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        oidc = OidcAuthenticator(
            issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(JWKS_URL, http), principals=Linked()
        )
        with pytest.raises(Unauthenticated):
            await oidc.authenticate(bearer(Issuer().token()), ctx)
