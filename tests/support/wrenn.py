"""Helpers for talking to the Wrenn face of a live server."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, replace
from typing import Any

import httpx

PASSWORD = "correct horse battery"  # a valid password (>= 8 characters)


def unique_email(tag: str = "user") -> str:
    """An email no other test (or parallel worker) uses."""
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The `error` object of a Wrenn error response, checking its shape on the way."""
    body = resp.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    err: dict[str, Any] = body["error"]
    return err


@dataclass(frozen=True)
class Account:
    """A signed-up user and a token scoped to one of their teams."""

    email: str
    password: str
    name: str
    user_id: str
    team_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


class Wrenn:
    """A thin client for the account APIs; every method returns what the server said."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def signup(
        self, email: str | None = None, password: str = PASSWORD, name: str = "Test User"
    ) -> Account:
        email = email or unique_email()
        resp = self.http.post(
            "/v1/auth/signup", json={"email": email, "password": password, "name": name}
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Account(
            email=body["email"],
            password=password,
            name=body["name"],
            user_id=body["user_id"],
            team_id=body["team_id"],
            token=body["token"],
        )

    def login(self, email: str, password: str) -> httpx.Response:
        return self.http.post("/v1/auth/login", json={"email": email, "password": password})

    def switch(self, account: Account, team_id: str) -> Account:
        """The same user with a token scoped to `team_id` (which they must belong to)."""
        resp = self.http.post(
            "/v1/auth/switch-team", json={"team_id": team_id}, headers=account.headers
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["team_id"] == team_id
        return replace(account, team_id=team_id, token=body["token"])

    def create_team(self, account: Account, name: str = "Test Team") -> dict[str, Any]:
        resp = self.http.post("/v1/teams", json={"name": name}, headers=account.headers)
        assert resp.status_code == 201, resp.text
        team: dict[str, Any] = resp.json()
        return team

    def new_team_as(self, account: Account, name: str = "Test Team") -> Account:
        """Create a team and switch to it: the owner's token for the new team."""
        team = self.create_team(account, name)
        return self.switch(account, team["id"])

    def add_member(self, owner: Account, email: str) -> httpx.Response:
        return self.http.post(
            f"/v1/teams/{owner.team_id}/members", json={"email": email}, headers=owner.headers
        )

    def join(self, owner: Account, member: Account, role: str = "member") -> Account:
        """Add `member` to the owner's current team with `role`, and scope them to it."""
        resp = self.add_member(owner, member.email)
        assert resp.status_code == 201, resp.text
        if role != "member":
            resp = self.http.patch(
                f"/v1/teams/{owner.team_id}/members/{member.user_id}",
                json={"role": role},
                headers=owner.headers,
            )
            assert resp.status_code == 204, resp.text
        return self.switch(member, owner.team_id)

    def create_key(self, account: Account, name: str | None = "ci") -> dict[str, Any]:
        body = {} if name is None else {"name": name}
        resp = self.http.post("/v1/api-keys", json=body, headers=account.headers)
        assert resp.status_code == 201, resp.text
        key: dict[str, Any] = resp.json()
        return key
