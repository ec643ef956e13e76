"""Wrenn `/v1/api-keys`: shown once, listed without secrets, revoked at once, team-scoped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.db import Database
from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import CredentialKind
from hangar.faces.wrenn import ids
from support.live import LiveServer
from support.wrenn import Account, Wrenn, error_of

KEY = re.compile(r"^wrn_[0-9a-f]{32}$")


@pytest.fixture
async def db(server: LiveServer) -> AsyncIterator[Database]:
    """The live server's own database, opened beside it."""
    database = Database(server.settings.resolved_database_url())
    yield database
    await database.dispose()


async def authenticate(db: Database, plaintext: str):  # type: ignore[no-untyped-def]
    async with db.session() as session:
        principal = await ApiKeyService(session, prefix="wrn_").authenticate(plaintext)
        await session.commit()
        return principal


def test_create_shows_the_key_once(wrenn: Wrenn, alice: Account) -> None:
    created = wrenn.create_key(alice, "deploy bot")
    assert KEY.fullmatch(created["key"])
    assert created["key_prefix"] == created["key"][:12] + "..."
    assert created["key_prefix"].startswith("wrn_")
    assert re.fullmatch(r"key-[0-9a-z]{25}", created["id"])
    assert created["team_id"] == alice.team_id
    assert created["created_by"] == alice.user_id
    assert created["name"] == "deploy bot"
    assert "last_used" not in created
    datetime.fromisoformat(created["created_at"])

    listed = wrenn.http.get("/v1/api-keys", headers=alice.headers).json()
    [entry] = [k for k in listed if k["id"] == created["id"]]
    assert "key" not in entry
    assert created["key"] not in str(listed)
    assert entry["key_prefix"] == created["key_prefix"]


@pytest.mark.parametrize("body", [None, {}, {"name": None}, {"name": ""}, {"name": "   "}])
def test_create_without_a_name_uses_the_default(
    http: httpx.Client, alice: Account, body: object
) -> None:
    kwargs = {} if body is None else {"json": body}
    resp = http.post("/v1/api-keys", headers=alice.headers, **kwargs)  # type: ignore[arg-type]
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "Unnamed API Key"


@pytest.mark.parametrize("name", ["x" * 129, "nul\x00byte"])
def test_create_refuses_names_it_cannot_store(
    http: httpx.Client, alice: Account, name: str
) -> None:
    resp = http.post("/v1/api-keys", json={"name": name}, headers=alice.headers)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_each_key_is_new(wrenn: Wrenn, alice: Account) -> None:
    a, b = wrenn.create_key(alice, "same"), wrenn.create_key(alice, "same")
    assert a["key"] != b["key"]
    assert a["id"] != b["id"]


def test_list_is_newest_first_and_only_the_callers_team(
    wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    made = [wrenn.create_key(alice, f"k{i}")["id"] for i in range(3)]
    wrenn.create_key(bob, "bob's")
    listed = wrenn.http.get("/v1/api-keys", headers=alice.headers)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()] == list(reversed(made))
    assert all(k["team_id"] == alice.team_id for k in listed.json())


def test_keys_belong_to_the_team_not_the_user(wrenn: Wrenn, alice: Account) -> None:
    personal = wrenn.create_key(alice, "personal")
    lab = wrenn.new_team_as(alice, "Lab")
    assert wrenn.http.get("/v1/api-keys", headers=lab.headers).json() == []
    lab_key = wrenn.create_key(lab, "lab")
    assert lab_key["team_id"] == lab.team_id
    ids_personal = [k["id"] for k in wrenn.http.get("/v1/api-keys", headers=alice.headers).json()]
    assert ids_personal == [personal["id"]]


def test_members_see_and_create_their_teams_keys(
    wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    key = wrenn.create_key(alice, "shared")
    bob_in_alices = wrenn.join(alice, bob)
    listed = wrenn.http.get("/v1/api-keys", headers=bob_in_alices.headers).json()
    assert [k["id"] for k in listed] == [key["id"]]
    made = wrenn.create_key(bob_in_alices, "bob made")
    assert made["team_id"] == alice.team_id
    assert made["created_by"] == bob.user_id


def test_delete_is_204_and_idempotent(wrenn: Wrenn, alice: Account) -> None:
    key = wrenn.create_key(alice)
    for _ in range(2):
        resp = wrenn.http.delete(f"/v1/api-keys/{key['id']}", headers=alice.headers)
        assert resp.status_code == 204
        assert resp.content == b""
    assert wrenn.http.get("/v1/api-keys", headers=alice.headers).json() == []


@pytest.mark.parametrize("key_id", ["key-0000000000000000000000000", "nonsense", "team-1"])
def test_deleting_an_unknown_key_is_204(http: httpx.Client, alice: Account, key_id: str) -> None:
    assert http.delete(f"/v1/api-keys/{key_id}", headers=alice.headers).status_code == 204


async def test_another_teams_key_cannot_be_deleted(
    wrenn: Wrenn, alice: Account, bob: Account, db: Database
) -> None:
    key = wrenn.create_key(alice, "precious")
    resp = wrenn.http.delete(f"/v1/api-keys/{key['id']}", headers=bob.headers)
    assert resp.status_code == 204  # idempotent: nothing of Bob's team by that id
    still = wrenn.http.get("/v1/api-keys", headers=alice.headers).json()
    assert [k["id"] for k in still] == [key["id"]]
    principal = await authenticate(db, key["key"])
    assert principal.team_id == ids.decode(ids.TEAM, alice.team_id)


async def test_a_key_authenticates_as_its_team_and_records_last_use(
    wrenn: Wrenn, alice: Account, db: Database
) -> None:
    key = wrenn.create_key(alice, "used")
    principal = await authenticate(db, key["key"])
    assert principal.kind is CredentialKind.API_KEY
    assert principal.team_id == ids.decode(ids.TEAM, alice.team_id)
    assert principal.user_id == ids.decode(ids.USER, alice.user_id)
    assert principal.api_key_id == ids.decode(ids.KEY, key["id"])
    [listed] = wrenn.http.get("/v1/api-keys", headers=alice.headers).json()
    assert datetime.fromisoformat(listed["last_used"]) >= datetime.fromisoformat(key["created_at"])


async def test_a_deleted_key_stops_working_at_once(
    wrenn: Wrenn, alice: Account, db: Database
) -> None:
    key = wrenn.create_key(alice, "short-lived")
    await authenticate(db, key["key"])
    assert wrenn.http.delete(f"/v1/api-keys/{key['id']}", headers=alice.headers).status_code == 204
    with pytest.raises(Unauthenticated):
        await authenticate(db, key["key"])


async def test_keys_of_a_deleted_team_stop_working(
    wrenn: Wrenn, alice: Account, db: Database
) -> None:
    lab = wrenn.new_team_as(alice, "Lab")
    key = wrenn.create_key(lab)
    await authenticate(db, key["key"])
    assert wrenn.http.delete(f"/v1/teams/{lab.team_id}", headers=lab.headers).status_code == 204
    with pytest.raises(Unauthenticated):
        await authenticate(db, key["key"])


async def test_unknown_and_near_miss_keys_are_refused(
    wrenn: Wrenn, alice: Account, db: Database
) -> None:
    key = wrenn.create_key(alice)["key"]
    for wrong in ("wrn_" + "0" * 32, key[:-1], key + "0", key.upper(), "", "\x00"):
        with pytest.raises(Unauthenticated):
            await authenticate(db, wrong)


def test_api_key_routes_need_a_user_token(wrenn: Wrenn, alice: Account) -> None:
    key = wrenn.create_key(alice)["key"]
    http = wrenn.http
    for headers in ({}, {"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        assert http.get("/v1/api-keys", headers=headers).status_code == 401
        assert http.post("/v1/api-keys", json={}, headers=headers).status_code == 401
        assert http.delete("/v1/api-keys/key-1", headers=headers).status_code == 401


def test_a_deleted_key_is_refused_at_once_by_routes_that_take_keys(
    wrenn: Wrenn, alice: Account
) -> None:
    """`GET /v1/capsules` accepts `X-API-Key` (the spec's apiKeyAuth): the key works there until
    the moment it is deleted."""
    key = wrenn.create_key(alice, "capsule bot")
    headers = {"X-API-Key": key["key"]}
    assert wrenn.http.get("/v1/capsules", headers=headers).status_code == 200
    assert wrenn.http.delete(f"/v1/api-keys/{key['id']}", headers=alice.headers).status_code == 204
    refused = wrenn.http.get("/v1/capsules", headers=headers)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "unauthorized"
    # A key is checked first and never falls back to the bearer token beside it.
    both = {**headers, **alice.headers}
    assert wrenn.http.get("/v1/capsules", headers=both).status_code == 401
