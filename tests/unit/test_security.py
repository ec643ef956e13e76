"""JWT signing, Argon2 password hashing and opaque secrets."""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path

import pytest
from joserfc import jwt

from hangar.core.auth.tokens import USER_AUDIENCE, UserTokens
from hangar.core.errors import Unauthenticated
from hangar.core.identity.models import Role, User
from hangar.core.security import opaque
from hangar.core.security.jwt import KEY_FILE, TokenSigner, generate_key, load_or_create_keys
from hangar.core.security.passwords import PasswordHasher

AUD = "test:audience"


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner([generate_key()], "hangar")


# -- JWT ----------------------------------------------------------------------------------------


def test_round_trip(signer: TokenSigner) -> None:
    token = signer.issue(AUD, "subject-1", 60, team_id="t1", extra=[1, 2])
    claims = signer.verify(token, AUD)
    assert claims["sub"] == "subject-1"
    assert claims["team_id"] == "t1"
    assert claims["extra"] == [1, 2]
    assert claims["iss"] == "hangar"
    assert claims["exp"] - claims["iat"] == 60
    header = jwt.decode(token, signer._verifying, algorithms=["Ed25519"]).header
    assert header["alg"] == "Ed25519"
    assert header["kid"]


def test_each_token_has_its_own_id(signer: TokenSigner) -> None:
    a, b = signer.issue(AUD, "s", 60), signer.issue(AUD, "s", 60)
    assert signer.verify(a, AUD)["jti"] != signer.verify(b, AUD)["jti"]


def test_expiry_has_thirty_seconds_of_leeway(signer: TokenSigner) -> None:
    signer.verify(signer.issue(AUD, "s", -10), AUD)
    with pytest.raises(Unauthenticated):
        signer.verify(signer.issue(AUD, "s", -60), AUD)


def test_wrong_audience(signer: TokenSigner) -> None:
    with pytest.raises(Unauthenticated):
        signer.verify(signer.issue("other", "s", 60), AUD)


def test_wrong_issuer() -> None:
    key = generate_key()
    token = TokenSigner([key], "elsewhere").issue(AUD, "s", 60)
    with pytest.raises(Unauthenticated):
        TokenSigner([key], "hangar").verify(token, AUD)


def test_wrong_key(signer: TokenSigner) -> None:
    token = TokenSigner([generate_key()], "hangar").issue(AUD, "s", 60)
    with pytest.raises(Unauthenticated):
        signer.verify(token, AUD)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_tampering_with_any_part(signer: TokenSigner, part: int) -> None:
    pieces = signer.issue(AUD, "s", 60).split(".")
    piece = pieces[part]
    pieces[part] = piece[:-2] + ("AA" if piece[-2:] != "AA" else "BB")
    with pytest.raises(Unauthenticated):
        signer.verify(".".join(pieces), AUD)


@pytest.mark.parametrize("garbage", ["", "a.b.c", "not a token", "e30.e30.", "...."])
def test_garbage(signer: TokenSigner, garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        signer.verify(garbage, AUD)


def test_missing_essential_claims(signer: TokenSigner) -> None:
    key = signer._signing
    now = int(time.time())
    for claims in (
        {"iss": "hangar", "aud": AUD, "exp": now + 60},  # no sub
        {"iss": "hangar", "aud": AUD, "sub": "s"},  # no exp
    ):
        token = jwt.encode({"alg": "Ed25519", "kid": key.kid}, claims, key, algorithms=["Ed25519"])
        with pytest.raises(Unauthenticated):
            signer.verify(token, AUD)


def test_key_rotation() -> None:
    old, new = generate_key(), generate_key()
    before = TokenSigner([old], "hangar").issue(AUD, "s", 60)
    rotated = TokenSigner([new, old], "hangar")
    assert rotated.verify(before, AUD)["sub"] == "s"
    after = rotated.issue(AUD, "s", 60)
    with pytest.raises(Unauthenticated):
        TokenSigner([old], "hangar").verify(after, AUD)


def test_a_signer_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TokenSigner([], "hangar")


def test_keys_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_keys([], tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_keys([], tmp_path)
    assert [k.kid for k in again] == [k.kid for k in first]
    token = TokenSigner(first, "hangar").issue(AUD, "s", 60)
    assert TokenSigner(again, "hangar").verify(token, AUD)["sub"] == "s"
    assert not list(tmp_path.glob("*.tmp"))


def test_configured_keys_win_over_the_data_directory(tmp_path: Path) -> None:
    key = generate_key()
    loaded = load_or_create_keys([json.dumps(key.as_dict(private=True))], tmp_path)
    assert [k.kid for k in loaded] == [key.kid]
    assert not (tmp_path / KEY_FILE).exists()


def test_user_tokens(signer: TokenSigner) -> None:
    tokens = UserTokens(signer, 6 * 3600)
    user = User(id="u-1", email="a@b.co", name="A")
    token = tokens.issue(user, "team-1", Role.ADMIN)
    claims = tokens.verify(token)
    assert (claims.user_id, claims.team_id) == ("u-1", "team-1")
    raw = signer.verify(token, USER_AUDIENCE)
    assert raw["role"] == "admin"
    assert raw["exp"] - raw["iat"] == 6 * 3600
    # A token of another audience made by the same signer is not a user token.
    with pytest.raises(Unauthenticated):
        tokens.verify(signer.issue("hangar:oauth-state", "u-1", 60))


def test_user_token_with_a_malformed_team_claim(signer: TokenSigner) -> None:
    token = signer.issue(USER_AUDIENCE, "u-1", 60, team_id=42)
    with pytest.raises(Unauthenticated):
        UserTokens(signer, 60).verify(token)


# -- passwords ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher()


async def test_argon2id_hashes(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct horse" not in hashed
    assert await hasher.hash("correct horse") != hashed  # salted
    assert await hasher.verify(hashed, "correct horse")
    assert not await hasher.verify(hashed, "correct horsE")
    assert not await hasher.verify(hashed, "")


async def test_verify_without_a_hash_or_with_a_broken_one(hasher: PasswordHasher) -> None:
    assert not await hasher.verify(None, "hangar-timing-equaliser")  # the dummy never matches
    assert not await hasher.verify(None, "anything")
    assert not await hasher.verify("not-a-hash", "anything")
    assert not await hasher.verify("$argon2id$v=19$m=19456,t=2,p=1$broken", "anything")


# -- opaque secrets -----------------------------------------------------------------------------


def test_generated_secrets() -> None:
    secrets = {opaque.generate_secret("wrn_", 16) for _ in range(100)}
    assert len(secrets) == 100
    assert all(re.fullmatch(r"wrn_[0-9a-f]{32}", s) for s in secrets)
    assert re.fullmatch(r"[0-9a-f]{64}", opaque.generate_secret())


def test_secret_hashes() -> None:
    digest = opaque.hash_secret("wrn_abc")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == opaque.hash_secret("wrn_abc")
    assert digest != opaque.hash_secret("wrn_abd")
    # SHA-256, so any other component can check a presented secret the same way.
    assert (
        opaque.hash_secret("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_same_secret() -> None:
    assert opaque.same_secret("a", "a")
    assert not opaque.same_secret("a", "b")
    assert not opaque.same_secret("a", "aa")
