"""Wrenn `/v1/teams/*`: teams, roles, members, leaving; and `/v1/users/search`."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
import pytest

from hangar.core.db import Database
from hangar.core.identity.models import Team
from hangar.core.identity.repository import TeamRepository
from hangar.faces.wrenn import ids
from support.live import LiveServer
from support.wrenn import Account, Wrenn, error_of, unique_email

SLUG = re.compile(r"^[0-9a-f]{6}-[0-9a-f]{6}$")
VALID_NAMES = ["A", "Research Lab", "team_42", "x" * 128, "  spaced  out  "]
INVALID_NAMES = ["", "   ", "x" * 129, "dash-name", "dot.name", "héllo", "tab\tname", "nul\x00"]


def members_of(http: httpx.Client, account: Account) -> dict[str, str]:
    resp = http.get(f"/v1/teams/{account.team_id}/members", headers=account.headers)
    assert resp.status_code == 200, resp.text
    return {m["user_id"]: m["role"] for m in resp.json()}


# -- create / list / get ------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_NAMES)
def test_create_team(http: httpx.Client, alice: Account, name: str) -> None:
    resp = http.post("/v1/teams", json={"name": name}, headers=alice.headers)
    assert resp.status_code == 201, resp.text
    team = resp.json()
    assert team["name"] == name
    assert team["role"] == "owner"
    assert SLUG.fullmatch(team["slug"])
    assert re.fullmatch(r"team-[0-9a-z]{25}", team["id"])
    datetime.fromisoformat(team["created_at"])


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_create_team_enforces_name_rules(http: httpx.Client, alice: Account, name: str) -> None:
    resp = http.post("/v1/teams", json={"name": name}, headers=alice.headers)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


@pytest.mark.parametrize("body", [{}, {"name": 3}, {"name": None}, "Lab"])
def test_create_team_rejects_malformed_bodies(
    http: httpx.Client, alice: Account, body: object
) -> None:
    assert http.post("/v1/teams", json=body, headers=alice.headers).status_code == 400


def test_create_team_needs_a_token(http: httpx.Client) -> None:
    assert http.post("/v1/teams", json={"name": "Lab"}).status_code == 401


def test_slugs_are_unique(wrenn: Wrenn, alice: Account) -> None:
    slugs = {wrenn.create_team(alice, f"T{i}")["slug"] for i in range(10)}
    assert len(slugs) == 10


def test_list_teams_with_roles(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    lab = wrenn.create_team(alice, "Lab")
    wrenn.join(wrenn.switch(alice, lab["id"]), bob, role="admin")
    teams = wrenn.http.get("/v1/teams", headers=bob.headers)
    assert teams.status_code == 200
    roles = {t["id"]: t["role"] for t in teams.json()}
    assert roles == {bob.team_id: "owner", lab["id"]: "admin"}
    assert all(set(t) >= {"id", "name", "slug", "created_at", "role"} for t in teams.json())


def test_get_team_shows_the_team_and_its_members(
    wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    wrenn.join(alice, bob)
    resp = wrenn.http.get(f"/v1/teams/{alice.team_id}", headers=alice.headers)
    assert resp.status_code == 200
    detail = resp.json()
    assert detail["team"]["id"] == alice.team_id
    assert detail["team"]["name"] == "Alice Team"
    by_user = {m["user_id"]: m for m in detail["members"]}
    assert by_user[alice.user_id]["role"] == "owner"
    assert by_user[alice.user_id]["email"] == alice.email
    assert by_user[bob.user_id]["role"] == "member"
    datetime.fromisoformat(by_user[bob.user_id]["joined_at"])
    # Members see the same.
    as_bob = wrenn.switch(bob, alice.team_id)
    assert wrenn.http.get(f"/v1/teams/{alice.team_id}", headers=as_bob.headers).json() == detail


@pytest.mark.parametrize("suffix", ["", "/members"])
def test_another_teams_id_is_403(
    http: httpx.Client, alice: Account, bob: Account, suffix: str
) -> None:
    resp = http.get(f"/v1/teams/{bob.team_id}{suffix}", headers=alice.headers)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"


def test_every_team_route_refuses_a_token_scoped_to_another_team(
    wrenn: Wrenn, alice: Account
) -> None:
    """The path's team must be the one the JWT is scoped to, even for the caller's own teams."""
    lab = wrenn.create_team(alice, "Lab")  # alice owns it, but her token is for her personal team
    http, tid, h = wrenn.http, lab["id"], alice.headers
    calls = [
        http.get(f"/v1/teams/{tid}", headers=h),
        http.patch(f"/v1/teams/{tid}", json={"name": "New"}, headers=h),
        http.delete(f"/v1/teams/{tid}", headers=h),
        http.get(f"/v1/teams/{tid}/members", headers=h),
        http.post(f"/v1/teams/{tid}/members", json={"email": unique_email()}, headers=h),
        http.patch(f"/v1/teams/{tid}/members/{alice.user_id}", json={"role": "admin"}, headers=h),
        http.delete(f"/v1/teams/{tid}/members/{alice.user_id}", headers=h),
        http.post(f"/v1/teams/{tid}/leave", headers=h),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls)
    assert (
        wrenn.http.get(f"/v1/teams/{tid}", headers=wrenn.switch(alice, tid).headers).status_code
        == 200
    )


# -- rename -------------------------------------------------------------------------------------


def test_owner_and_admin_rename_but_members_cannot(
    wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    http = wrenn.http
    assert (
        http.patch(
            f"/v1/teams/{alice.team_id}", json={"name": "Renamed"}, headers=alice.headers
        ).status_code
        == 204
    )
    assert (
        http.get(f"/v1/teams/{alice.team_id}", headers=alice.headers).json()["team"]["name"]
        == "Renamed"
    )

    member = wrenn.join(alice, bob)
    resp = http.patch(f"/v1/teams/{alice.team_id}", json={"name": "Mine"}, headers=member.headers)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"

    http.patch(
        f"/v1/teams/{alice.team_id}/members/{bob.user_id}",
        json={"role": "admin"},
        headers=alice.headers,
    )
    # Bob's token still says "member": the role is verified from the database, not the JWT.
    resp = http.patch(
        f"/v1/teams/{alice.team_id}", json={"name": "By Admin"}, headers=member.headers
    )
    assert resp.status_code == 204
    assert http.get("/v1/teams", headers=alice.headers).json()[0]["name"] == "By Admin"


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_rename_enforces_name_rules(http: httpx.Client, alice: Account, name: str) -> None:
    resp = http.patch(f"/v1/teams/{alice.team_id}", json={"name": name}, headers=alice.headers)
    assert resp.status_code == 400


# -- delete -------------------------------------------------------------------------------------


def test_only_the_owner_deletes(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    admin = wrenn.join(alice, bob, role="admin")
    resp = wrenn.http.delete(f"/v1/teams/{alice.team_id}", headers=admin.headers)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"
    assert wrenn.http.get(f"/v1/teams/{alice.team_id}", headers=alice.headers).status_code == 200


async def test_delete_is_soft_and_keeps_the_slug_reserved(
    server: LiveServer, wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    lab = wrenn.new_team_as(alice, "Doomed Lab")
    member = wrenn.join(lab, bob)
    slug = wrenn.http.get(f"/v1/teams/{lab.team_id}", headers=lab.headers).json()["team"]["slug"]

    resp = wrenn.http.delete(f"/v1/teams/{lab.team_id}", headers=lab.headers)
    assert resp.status_code == 204
    assert resp.content == b""

    # Gone for everyone through the API: tokens acting for it are refused...
    assert wrenn.http.get(f"/v1/teams/{lab.team_id}", headers=lab.headers).status_code == 401
    assert wrenn.http.get(f"/v1/teams/{lab.team_id}", headers=member.headers).status_code == 401
    for who in (alice, bob):
        listed = [t["id"] for t in wrenn.http.get("/v1/teams", headers=who.headers).json()]
        assert lab.team_id not in listed
        assert wrenn.http.get(f"/v1/teams/{lab.team_id}", headers=who.headers).status_code == 403
    # ...deleting again is refused...
    assert wrenn.http.delete(f"/v1/teams/{lab.team_id}", headers=lab.headers).status_code == 401

    # ...but the row is kept, and its slug can never be handed out again.
    database = Database(server.settings.resolved_database_url())
    try:
        async with database.session() as session:
            row = await session.get(Team, ids.decode(ids.TEAM, lab.team_id))
            assert row is not None
            assert row.deleted_at is not None
            assert row.slug == slug
            assert row.name == "Doomed Lab"
            assert await TeamRepository(session).slug_exists(slug)
            assert await TeamRepository(session).get(row.id) is None
    finally:
        await database.dispose()


# -- members ------------------------------------------------------------------------------------


def test_add_member_by_email(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    resp = wrenn.add_member(alice, f"  {bob.email.upper()} ")
    assert resp.status_code == 201, resp.text
    added = resp.json()
    assert added["user_id"] == bob.user_id
    assert added["email"] == bob.email
    assert added["role"] == "member"
    datetime.fromisoformat(added["joined_at"])
    assert members_of(wrenn.http, alice) == {alice.user_id: "owner", bob.user_id: "member"}
    # Bob now has the team, and may switch to it.
    assert alice.team_id in [
        t["id"] for t in wrenn.http.get("/v1/teams", headers=bob.headers).json()
    ]


def test_add_member_errors(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    unknown = wrenn.add_member(alice, unique_email("ghost"))
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "not_found"
    assert wrenn.add_member(alice, "not-an-email").status_code == 400
    assert wrenn.add_member(alice, bob.email).status_code == 201
    again = wrenn.add_member(alice, bob.email)
    assert again.status_code == 400
    assert error_of(again)["code"] == "invalid_request"
    assert wrenn.add_member(alice, alice.email).status_code == 400  # the owner is a member


def test_admins_add_members_but_members_cannot(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    carol, dave = wrenn.signup(name="Carol"), wrenn.signup(name="Dave")
    member = wrenn.join(alice, bob)
    resp = wrenn.add_member(member, carol.email)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"
    admin = wrenn.join(alice, carol, role="admin")
    assert wrenn.add_member(admin, dave.email).status_code == 201


def test_update_member_role(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    wrenn.join(alice, bob)
    url = f"/v1/teams/{alice.team_id}/members/{bob.user_id}"
    for role in ("admin", "member", "admin"):
        resp = wrenn.http.patch(url, json={"role": role}, headers=alice.headers)
        assert resp.status_code == 204
        assert members_of(wrenn.http, alice)[bob.user_id] == role


@pytest.mark.parametrize("role", ["owner", "superuser", "", None])
def test_update_member_role_accepts_only_admin_or_member(
    wrenn: Wrenn, alice: Account, bob: Account, role: str | None
) -> None:
    wrenn.join(alice, bob)
    resp = wrenn.http.patch(
        f"/v1/teams/{alice.team_id}/members/{bob.user_id}",
        json={"role": role},
        headers=alice.headers,
    )
    assert resp.status_code == 400
    assert members_of(wrenn.http, alice)[bob.user_id] == "member"


def test_the_owners_role_is_immutable(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    admin = wrenn.join(alice, bob, role="admin")
    url = f"/v1/teams/{alice.team_id}/members/{alice.user_id}"
    for who in (alice, admin):
        for role in ("admin", "member"):
            resp = wrenn.http.patch(url, json={"role": role}, headers=who.headers)
            assert resp.status_code == 403
            assert error_of(resp)["code"] == "forbidden"
    assert members_of(wrenn.http, alice)[alice.user_id] == "owner"


def test_members_cannot_change_roles(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    carol = wrenn.signup(name="Carol")
    member = wrenn.join(alice, bob)
    wrenn.join(alice, carol)
    for target in (bob, carol):
        resp = wrenn.http.patch(
            f"/v1/teams/{alice.team_id}/members/{target.user_id}",
            json={"role": "admin"},
            headers=member.headers,
        )
        assert resp.status_code == 403
    assert members_of(wrenn.http, alice)[bob.user_id] == "member"


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_user_who_is_not_a_member_is_404(
    wrenn: Wrenn, alice: Account, bob: Account, method: str
) -> None:
    for uid in (bob.user_id, "usr-0000000000000000000000000", "nonsense"):
        url = f"/v1/teams/{alice.team_id}/members/{uid}"
        kwargs = {"json": {"role": "admin"}} if method == "patch" else {}
        resp = wrenn.http.request(method.upper(), url, headers=alice.headers, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == 404, uid
        assert error_of(resp)["code"] == "not_found"


def test_remove_member(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    member = wrenn.join(alice, bob)
    resp = wrenn.http.delete(
        f"/v1/teams/{alice.team_id}/members/{bob.user_id}", headers=alice.headers
    )
    assert resp.status_code == 204
    assert bob.user_id not in members_of(wrenn.http, alice)
    # Bob's token for the team stops working at once.
    assert wrenn.http.get(f"/v1/teams/{alice.team_id}", headers=member.headers).status_code == 401


def test_admins_remove_members_but_never_the_owner(
    wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    carol = wrenn.signup(name="Carol")
    admin = wrenn.join(alice, bob, role="admin")
    wrenn.join(alice, carol)
    base = f"/v1/teams/{alice.team_id}/members"
    owner = wrenn.http.delete(f"{base}/{alice.user_id}", headers=admin.headers)
    assert owner.status_code == 403
    assert wrenn.http.delete(f"{base}/{alice.user_id}", headers=alice.headers).status_code == 403
    assert wrenn.http.delete(f"{base}/{carol.user_id}", headers=admin.headers).status_code == 204
    assert members_of(wrenn.http, alice) == {alice.user_id: "owner", bob.user_id: "admin"}


def test_members_cannot_remove_anyone(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    carol = wrenn.signup(name="Carol")
    member = wrenn.join(alice, bob)
    wrenn.join(alice, carol)
    resp = wrenn.http.delete(
        f"/v1/teams/{alice.team_id}/members/{carol.user_id}", headers=member.headers
    )
    assert resp.status_code == 403
    assert carol.user_id in members_of(wrenn.http, alice)


# -- leave --------------------------------------------------------------------------------------


def test_a_member_leaves(wrenn: Wrenn, alice: Account, bob: Account) -> None:
    for role in ("member", "admin"):
        joined = wrenn.join(alice, bob, role=role)
        resp = wrenn.http.post(f"/v1/teams/{alice.team_id}/leave", headers=joined.headers)
        assert resp.status_code == 204
        assert bob.user_id not in members_of(wrenn.http, alice)
        teams = [t["id"] for t in wrenn.http.get("/v1/teams", headers=bob.headers).json()]
        assert teams == [bob.team_id]


def test_the_owner_cannot_leave(http: httpx.Client, alice: Account) -> None:
    resp = http.post(f"/v1/teams/{alice.team_id}/leave", headers=alice.headers)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"


def test_leaving_someone_elses_team_is_403(
    http: httpx.Client, alice: Account, bob: Account
) -> None:
    assert http.post(f"/v1/teams/{bob.team_id}/leave", headers=alice.headers).status_code == 403


# -- users/search -------------------------------------------------------------------------------


def test_search_by_email_prefix(wrenn: Wrenn) -> None:
    tag = uuid.uuid4().hex[:10]
    made = [wrenn.signup(email=f"{tag}@{tag}-{i:02}.example.com") for i in range(12)]
    resp = wrenn.http.get(
        "/v1/users/search", params={"email": f"{tag.upper()}@{tag}"}, headers=made[0].headers
    )
    assert resp.status_code == 200
    hits = resp.json()
    assert len(hits) == 10
    assert [h["email"] for h in hits] == sorted(a.email for a in made)[:10]
    assert all(set(h) == {"user_id", "email"} for h in hits)
    by_email = {a.email: a.user_id for a in made}
    assert all(by_email[h["email"]] == h["user_id"] for h in hits)

    exact = wrenn.http.get(
        "/v1/users/search", params={"email": made[3].email}, headers=made[0].headers
    )
    assert [h["user_id"] for h in exact.json()] == [made[3].user_id]


@pytest.mark.parametrize("prefix", ["alice", "", "example.com"])
def test_search_needs_an_at_sign(http: httpx.Client, alice: Account, prefix: str) -> None:
    resp = http.get("/v1/users/search", params={"email": prefix}, headers=alice.headers)
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_search_treats_wildcards_literally(http: httpx.Client, alice: Account) -> None:
    for prefix in ("%@", "_@%", "%@%"):
        resp = http.get("/v1/users/search", params={"email": prefix}, headers=alice.headers)
        assert resp.status_code == 200
        assert resp.json() == []


def test_search_needs_the_parameter_and_a_token(http: httpx.Client, alice: Account) -> None:
    assert http.get("/v1/users/search", headers=alice.headers).status_code == 400
    assert http.get("/v1/users/search", params={"email": "a@"}).status_code == 401
