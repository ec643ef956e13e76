"""Wrenn `/v1/auth/*`: signup, login, switch-team, and what a bearer token must be."""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from hangar.core.auth.tokens import USER_AUDIENCE
from hangar.core.security.jwt import TokenSigner, generate_key, load_or_create_keys
from support.live import LiveServer
from support.wrenn import PASSWORD, Account, Wrenn, bearer, claims_of, error_of, unique_email

SLUG = re.compile(r"^[0-9a-f]{6}-[0-9a-f]{6}$")


# -- signup -------------------------------------------------------------------------------------


def test_signup_creates_account_and_personal_team(http: httpx.Client) -> None:
    email = unique_email("MiXeD.Case")
    resp = http.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Ada Lovelace"}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"token", "user_id", "team_id", "email", "name"}
    assert body["email"] == email.lower()
    assert body["name"] == "Ada Lovelace"
    assert re.fullmatch(r"usr-[0-9a-z]{25}", body["user_id"])
    assert re.fullmatch(r"team-[0-9a-z]{25}", body["team_id"])

    teams = http.get("/v1/teams", headers=bearer(body["token"]))
    assert teams.status_code == 200
    [team] = teams.json()
    assert team["id"] == body["team_id"]
    assert team["role"] == "owner"
    assert team["name"] == "Ada Lovelace Team"
    assert SLUG.fullmatch(team["slug"])


def test_signup_token_is_a_six_hour_jwt_scoped_to_the_personal_team(alice: Account) -> None:
    claims = claims_of(alice.token)
    assert claims["aud"] == USER_AUDIENCE
    assert claims["exp"] - claims["iat"] == 6 * 3600
    assert claims["role"] == "owner"
    assert claims["email"] == alice.email
    # The JWT carries core ids; the wire shows Wrenn ids. Both name the same team.
    assert isinstance(claims["team_id"], str)


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "no-at-sign.example.com", "two@@example.com", "user@localhost", "", " "],
)
def test_signup_rejects_bad_email(http: httpx.Client, email: str) -> None:
    resp = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "X"})
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_signup_password_must_have_eight_characters(http: httpx.Client) -> None:
    short = http.post(
        "/v1/auth/signup", json={"email": unique_email(), "password": "1234567", "name": "X"}
    )
    assert short.status_code == 400
    assert "8" in error_of(short)["message"]
    ok = http.post(
        "/v1/auth/signup", json={"email": unique_email(), "password": "12345678", "name": "X"}
    )
    assert ok.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD, "name": "X"},
        {"email": "a@example.com", "name": "X"},
        {"email": "a@example.com", "password": PASSWORD},
        {"email": 5, "password": PASSWORD, "name": "X"},
        [],
    ],
)
def test_signup_rejects_malformed_bodies(http: httpx.Client, body: object) -> None:
    resp = http.post("/v1/auth/signup", json=body)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_signup_rejects_invalid_json(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/auth/signup", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert error_of(resp) == {"code": "invalid_request", "message": "invalid JSON body"}


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "nul\x00name"])
def test_signup_rejects_bad_names(http: httpx.Client, name: str) -> None:
    resp = http.post(
        "/v1/auth/signup", json={"email": unique_email(), "password": PASSWORD, "name": name}
    )
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_signup_duplicate_email_is_409_whatever_the_case(
    http: httpx.Client, alice: Account
) -> None:
    for email in (alice.email, alice.email.upper(), f"  {alice.email}  "):
        resp = http.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Again"}
        )
        assert resp.status_code == 409, (email, resp.text)
        assert error_of(resp)["code"] == "email_taken"


# -- login --------------------------------------------------------------------------------------


def test_login_returns_a_token_for_the_personal_team(wrenn: Wrenn, alice: Account) -> None:
    resp = wrenn.login(alice.email.upper(), alice.password)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_id"] == alice.user_id
    assert body["team_id"] == alice.team_id
    assert body["email"] == alice.email
    assert body["name"] == "Alice"
    assert wrenn.http.get("/v1/teams", headers=bearer(body["token"])).status_code == 200


def test_login_stays_on_the_oldest_team_after_creating_others(wrenn: Wrenn, alice: Account) -> None:
    wrenn.create_team(alice, "Second")
    body = wrenn.login(alice.email, alice.password).json()
    assert body["team_id"] == alice.team_id


@pytest.mark.parametrize("wrong", ["wrong password", "", "x\x00y"])
def test_login_wrong_password_is_401(wrenn: Wrenn, alice: Account, wrong: str) -> None:
    resp = wrenn.login(alice.email, wrong)
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


@pytest.mark.parametrize("email", ["nobody-{}@example.com", "not an email {}", "nul\x00{}@x.io"])
def test_login_unknown_email_is_401_like_a_wrong_password(wrenn: Wrenn, email: str) -> None:
    resp = wrenn.login(email.format(time.time_ns()), PASSWORD)
    assert resp.status_code == 401
    assert error_of(resp) == {"code": "unauthorized", "message": "invalid email or password"}


# -- switch-team --------------------------------------------------------------------------------


def test_switch_team_issues_a_token_for_the_other_team(wrenn: Wrenn, alice: Account) -> None:
    team = wrenn.create_team(alice, "Lab")
    switched = wrenn.switch(alice, team["id"])
    assert claims_of(switched.token)["role"] == "owner"
    http = wrenn.http
    assert http.get(f"/v1/teams/{team['id']}", headers=switched.headers).status_code == 200
    # The new token no longer speaks for the personal team, and the old one never spoke for the new.
    assert http.get(f"/v1/teams/{alice.team_id}", headers=switched.headers).status_code == 403
    assert http.get(f"/v1/teams/{team['id']}", headers=alice.headers).status_code == 403
    # ...and it switches back.
    assert wrenn.switch(switched, alice.team_id).team_id == alice.team_id


def test_switch_team_to_a_team_of_someone_else_is_403(
    http: httpx.Client, alice: Account, bob: Account
) -> None:
    resp = http.post("/v1/auth/switch-team", json={"team_id": bob.team_id}, headers=alice.headers)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"


@pytest.mark.parametrize(
    "team_id", ["team-0000000000000000000000000", "team-zzzz", "nonsense", "", "usr-1"]
)
def test_switch_team_to_an_unknown_team_is_404(
    http: httpx.Client, alice: Account, team_id: str
) -> None:
    resp = http.post("/v1/auth/switch-team", json={"team_id": team_id}, headers=alice.headers)
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "not_found"


def test_switch_team_to_a_deleted_team_is_404(wrenn: Wrenn, alice: Account) -> None:
    lab = wrenn.new_team_as(alice, "Doomed")
    assert wrenn.http.delete(f"/v1/teams/{lab.team_id}", headers=lab.headers).status_code == 204
    resp = wrenn.http.post(
        "/v1/auth/switch-team", json={"team_id": lab.team_id}, headers=alice.headers
    )
    assert resp.status_code == 404


def test_switch_team_needs_a_user_token(http: httpx.Client, alice: Account) -> None:
    resp = http.post("/v1/auth/switch-team", json={"team_id": alice.team_id})
    assert resp.status_code == 401


# -- bearer tokens ------------------------------------------------------------------------------


def _server_signer(server: LiveServer) -> TokenSigner:
    """A signer holding the live server's own signing key (kept in its data directory)."""
    return TokenSigner(load_or_create_keys([], server.data_dir), "hangar")


def _forge(signer: TokenSigner, alice: Account, **overrides: object) -> str:
    claims = claims_of(alice.token)
    audience = str(overrides.pop("aud", USER_AUDIENCE))
    ttl = int(overrides.pop("ttl", 3600))  # type: ignore[call-overload]
    body = {k: v for k, v in claims.items() if k not in ("iss", "aud", "sub", "iat", "exp", "jti")}
    body.update(overrides)
    return signer.issue(audience, str(claims["sub"]), ttl, **body)


def test_a_token_forged_with_the_server_key_works(
    server: LiveServer, http: httpx.Client, alice: Account
) -> None:
    # The control for the negative cases below: only the one thing each changes is wrong.
    token = _forge(_server_signer(server), alice)
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 200


def test_an_expired_token_is_401(server: LiveServer, http: httpx.Client, alice: Account) -> None:
    token = _forge(_server_signer(server), alice, ttl=-120)  # past the 30 s leeway
    resp = http.get("/v1/teams", headers=bearer(token))
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


def test_a_token_signed_with_another_key_is_401(http: httpx.Client, alice: Account) -> None:
    token = _forge(TokenSigner([generate_key()], "hangar"), alice)
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 401


def test_a_token_for_another_audience_is_401(
    server: LiveServer, http: httpx.Client, alice: Account
) -> None:
    token = _forge(_server_signer(server), alice, aud="hangar:oauth-state")
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 401


def test_a_token_from_another_issuer_is_401(
    server: LiveServer, http: httpx.Client, alice: Account
) -> None:
    keys = load_or_create_keys([], server.data_dir)
    token = _forge(TokenSigner(keys, "someone-else"), alice)
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 401


def test_a_token_for_an_unknown_user_is_401(server: LiveServer, http: httpx.Client) -> None:
    token = _server_signer(server).issue(
        USER_AUDIENCE, "0" * 8 + "-0000-4000-8000-" + "0" * 12, 3600
    )
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 401


def test_a_tampered_token_is_401(http: httpx.Client, alice: Account) -> None:
    header, payload, signature = alice.token.split(".")
    claims = claims_of(alice.token)
    claims["role"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    flipped_sig = ("A" if signature[0] != "A" else "B") + signature[1:]
    for token in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{flipped_sig}"):
        resp = http.get("/v1/teams", headers=bearer(token))
        assert resp.status_code == 401, token


def test_an_unsigned_token_is_401(http: httpx.Client, alice: Account) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = alice.token.split(".")[1]
    assert http.get("/v1/teams", headers=bearer(f"{header}.{payload}.")).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "garbage"},
    ],
)
def test_missing_or_malformed_credentials_are_401(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    resp = http.get("/v1/teams", headers=headers)
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


def test_a_foreign_jwt_library_token_with_our_kid_but_another_key_is_401(
    server: LiveServer, http: httpx.Client, alice: Account
) -> None:
    real = load_or_create_keys([], server.data_dir)[0]
    impostor = OKPKey.generate_key("Ed25519", parameters={"kid": real.kid}, private=True)
    claims = claims_of(alice.token)
    token = jwt.encode(
        {"alg": "Ed25519", "kid": real.kid}, claims, impostor, algorithms=["Ed25519"]
    )
    assert http.get("/v1/teams", headers=bearer(token)).status_code == 401


def test_unknown_paths_and_methods_answer_in_wrenns_error_shape(http: httpx.Client) -> None:
    missing = http.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    wrong_method = http.put("/v1/auth/login", json={})
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"


def test_paths_with_encoded_newlines_still_reach_the_face(http: httpx.Client) -> None:
    resp = http.get("/v1/teams/a%0Ab")
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"
    assert error_of(http.get("/v1/no%0Asuch"))["code"] == "not_found"
