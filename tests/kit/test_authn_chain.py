"""The authenticator interface and chains: order, no fallback past a bad credential, faces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.requests import Request

from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.platform import Platform
from hangar.faces.fastvm import FACE as FASTVM
from hangar.faces.wrenn import FACE as WRENN
from hangar.web.authn import AuthChain, AuthContext, Authenticator, build_chain
from hangar.web.authn.builtin import ApiKeyAuthenticator, UserJwtAuthenticator
from hangar.web.registry import build_face
from kit.authn_face import FakeAuthenticator
from support.live import make_settings

ALICE = Principal(kind=CredentialKind.API_KEY, team_id="t1", user_id="u1")
BOB = Principal(kind=CredentialKind.USER_TOKEN, team_id="t2", user_id="u2")


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[AuthContext]:
    platform = Platform(make_settings(tmp_path, None, None))
    async with platform.db.session() as session:
        yield AuthContext(session, platform)
    await platform.db.dispose()


def request(path: str = "/x") -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": []})


def test_the_fake_is_an_authenticator() -> None:
    assert isinstance(FakeAuthenticator("fake"), Authenticator)
    assert isinstance(ApiKeyAuthenticator(), Authenticator)


async def test_the_first_authenticator_that_finds_its_credential_decides(
    ctx: AuthContext,
) -> None:
    none, alice, bob = (
        FakeAuthenticator("none"),
        FakeAuthenticator("a", ALICE),
        FakeAuthenticator("b", BOB),
    )
    chain = AuthChain([none, alice, bob])
    assert await chain.authenticate(request(), ctx) == ALICE
    assert none.calls == ["/x"]
    assert alice.calls == ["/x"]
    assert bob.calls == []


async def test_a_wrong_credential_never_falls_through(ctx: AuthContext) -> None:
    later = FakeAuthenticator("later", BOB)
    chain = AuthChain([FakeAuthenticator("bad", refuse=True), later])
    with pytest.raises(Unauthenticated, match="bad refused"):
        await chain.authenticate(request(), ctx)
    assert later.calls == []


async def test_no_credential_names_what_the_chain_accepts(ctx: AuthContext) -> None:
    chain = AuthChain([ApiKeyAuthenticator(), UserJwtAuthenticator(), FakeAuthenticator("quiet")])
    with pytest.raises(Unauthenticated) as refusal:
        await chain.authenticate(request(), ctx)
    assert refusal.value.message == "X-API-Key or Authorization: Bearer <token> required"


def test_chains_are_built_from_names_and_instances() -> None:
    fake = FakeAuthenticator("custom")
    chain = build_chain(["api_key", fake, "user_jwt"])
    assert chain.names == ("api_key", "custom", "user_jwt")
    assert chain.authenticators[1] is fake
    with pytest.raises(ValueError, match="unknown authenticator"):
        build_chain(["nope"])


def test_each_face_runs_the_chain_it_declares(tmp_path: Path) -> None:
    platform = Platform(make_settings(tmp_path, None, None))
    assert WRENN.authenticators[:2] == ("api_key", "user_jwt")
    for spec in (WRENN, FASTVM):
        face = build_face(spec, platform, None)
        chain: AuthChain = face.app.state.auth_chain
        assert chain.names == spec.authenticators
        assert chain.names[0] == "api_key"
