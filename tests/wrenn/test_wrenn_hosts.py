"""The Wrenn host APIs on a live server: permissions, tokens, heartbeats, deletion, tags."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from support.hosts import (
    HostApi,
    add_capsule,
    capsule_status,
    expire_tokens,
    host_events,
    make_platform_admin,
    set_host,
)
from support.live import LiveServer
from support.wrenn import Account, Wrenn, claims_of, error_of


@pytest.fixture
def hosts(http: httpx.Client) -> HostApi:
    return HostApi(http)


@pytest.fixture
def admin(server: LiveServer, wrenn: Wrenn) -> Account:
    return make_platform_admin(server, wrenn.signup(name="Admin"))


# create / list / get ---------------------------------------------------------------------


def test_admin_creates_regular_host_with_registration_token(hosts: HostApi, admin: Account) -> None:
    made = hosts.created(admin, provider="hetzner", availability_zone="eu-west")
    host = made["host"]
    assert host["id"].startswith("host-")
    assert len(host["id"]) == len("host-") + 25
    assert host["type"] == "regular"
    assert host["team_id"] is None
    assert host["status"] == "pending"
    assert host["last_heartbeat_at"] is None
    assert host["provider"] == "hetzner"
    assert host["availability_zone"] == "eu-west"
    assert host["created_by"] == admin.user_id
    assert made["registration_token"].startswith("hrt_")


def test_non_admin_cannot_create_regular_host(hosts: HostApi, alice: Account) -> None:
    resp = hosts.create(alice)
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"


def test_byoc_by_team_owner_ok_by_member_forbidden(
    hosts: HostApi, wrenn: Wrenn, alice: Account, bob: Account
) -> None:
    made = hosts.created(alice, type="byoc", team_id=alice.team_id)
    assert made["host"]["type"] == "byoc"
    assert made["host"]["team_id"] == alice.team_id
    member = wrenn.join(alice, bob)
    assert hosts.create(member, type="byoc", team_id=alice.team_id).status_code == 403
    admin_of_team = wrenn.join(alice, wrenn.signup(name="Carol"), role="admin")
    assert hosts.create(admin_of_team, type="byoc", team_id=alice.team_id).status_code == 403
    # Not the owner of another team either, whatever the body says.
    assert hosts.create(bob, type="byoc", team_id=alice.team_id).status_code == 403


def test_byoc_needs_team_and_type_must_be_known(hosts: HostApi, admin: Account) -> None:
    for body in ({"type": "byoc"}, {"type": "spaceship"}, {"type": "byoc", "team_id": "x"}):
        resp = hosts.create(admin, **body)
        assert resp.status_code == 400, (body, resp.text)
        assert error_of(resp)["code"] == "invalid_request"
    ok = hosts.create(admin, type="byoc", team_id=admin.team_id)
    assert ok.status_code == 201


def test_list_and_get_are_scoped(
    http: httpx.Client, hosts: HostApi, admin: Account, alice: Account, bob: Account
) -> None:
    regular = hosts.created(admin)["host"]["id"]
    byoc = hosts.created(alice, type="byoc", team_id=alice.team_id)["host"]["id"]
    listed = {h["id"] for h in http.get("/v1/hosts", headers=admin.headers).json()}
    assert {regular, byoc} <= listed
    assert [h["id"] for h in http.get("/v1/hosts", headers=alice.headers).json()] == [byoc]
    assert http.get("/v1/hosts", headers=bob.headers).json() == []
    assert http.get(f"/v1/hosts/{byoc}", headers=alice.headers).status_code == 200
    assert http.get(f"/v1/hosts/{byoc}", headers=admin.headers).status_code == 200
    for who, host_id in ((alice, regular), (bob, byoc), (bob, "host-nope"), (admin, "x")):
        resp = http.get(f"/v1/hosts/{host_id}", headers=who.headers)
        assert resp.status_code == 404, resp.text
        assert error_of(resp)["code"] == "not_found"
    assert http.get("/v1/hosts").status_code == 401


# registration tokens -----------------------------------------------------------------------


def test_register_records_specs_and_returns_credentials(hosts: HostApi, admin: Account) -> None:
    made = hosts.created(admin)
    resp = hosts.register(made["registration_token"], address="10.1.2.3:7000")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    host = body["host"]
    assert host["id"] == made["host"]["id"]
    assert host["status"] == "online"
    assert host["last_heartbeat_at"] is not None
    assert (host["arch"], host["cpu_cores"], host["memory_mb"], host["disk_gb"]) == (
        "x86_64",
        8,
        16384,
        200,
    )
    assert host["address"] == "10.1.2.3:7000"
    claims = claims_of(body["token"])
    assert claims["aud"] == "hangar:host"
    assert 7 * 86400 - 60 <= claims["exp"] - claims["iat"] <= 7 * 86400
    assert body["refresh_token"].startswith("hrf_")


def test_registration_token_is_single_use(hosts: HostApi, admin: Account) -> None:
    token = hosts.created(admin)["registration_token"]
    assert hosts.register(token).status_code == 201
    again = hosts.register(token)
    assert again.status_code == 401
    assert error_of(again)["code"] == "unauthorized"
    assert hosts.register("hrt_" + "0" * 64).status_code == 401


def test_concurrent_registrations_with_one_token_exactly_one_wins(
    server: LiveServer, hosts: HostApi, admin: Account
) -> None:
    token = hosts.created(admin)["registration_token"]

    def attempt(i: int) -> int:
        with server.client() as client:
            return HostApi(client).register(token, address=f"10.0.0.{i}:7000").status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(attempt, range(8)))
    assert codes == [201] + [401] * 7


def test_expired_registration_token_is_refused(
    server: LiveServer, hosts: HostApi, admin: Account
) -> None:
    made = hosts.created(admin)
    expire_tokens(server, made["host"]["id"], datetime.now(UTC) - timedelta(seconds=1))
    resp = hosts.register(made["registration_token"])
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


def test_regenerate_token_only_while_pending(
    http: httpx.Client, hosts: HostApi, admin: Account, alice: Account
) -> None:
    made = hosts.created(admin)
    host_id = made["host"]["id"]
    assert http.post(f"/v1/hosts/{host_id}/token", headers=alice.headers).status_code == 404
    resp = http.post(f"/v1/hosts/{host_id}/token", headers=admin.headers)
    assert resp.status_code == 201, resp.text
    fresh = resp.json()["registration_token"]
    assert fresh != made["registration_token"]
    assert hosts.register(made["registration_token"]).status_code == 401  # replaced
    assert hosts.register(fresh).status_code == 201
    done = http.post(f"/v1/hosts/{host_id}/token", headers=admin.headers)
    assert done.status_code == 409
    assert error_of(done)["code"] == "invalid_state"


def test_byoc_regenerate_follows_create_permissions(
    http: httpx.Client, wrenn: Wrenn, hosts: HostApi, alice: Account, bob: Account
) -> None:
    host_id = hosts.created(alice, type="byoc", team_id=alice.team_id)["host"]["id"]
    member = wrenn.join(alice, bob)
    assert http.post(f"/v1/hosts/{host_id}/token", headers=member.headers).status_code == 403
    assert http.post(f"/v1/hosts/{host_id}/token", headers=alice.headers).status_code == 201


# host JWT, heartbeat, refresh ------------------------------------------------------------


def test_heartbeat_checks_token_and_host_id(hosts: HostApi, admin: Account) -> None:
    one = hosts.registered(admin)
    two = hosts.registered(admin)
    assert hosts.heartbeat(one["host"]["id"], one["token"]).status_code == 204
    mismatch = hosts.heartbeat(two["host"]["id"], one["token"])
    assert mismatch.status_code == 403
    assert error_of(mismatch)["code"] == "forbidden"
    assert hosts.heartbeat("host-garbage", one["token"]).status_code == 403
    for bad in ("", "not-a-jwt", admin.token, one["refresh_token"]):
        resp = hosts.heartbeat(one["host"]["id"], bad)
        assert resp.status_code == 401, bad
        assert error_of(resp)["code"] == "unauthorized"


def test_heartbeat_updates_last_heartbeat(
    http: httpx.Client, hosts: HostApi, admin: Account
) -> None:
    creds = hosts.registered(admin)
    host_id = creds["host"]["id"]
    before = creds["host"]["last_heartbeat_at"]
    time.sleep(0.01)
    assert hosts.heartbeat(host_id, creds["token"]).status_code == 204
    after = http.get(f"/v1/hosts/{host_id}", headers=admin.headers).json()
    assert after["last_heartbeat_at"] > before
    assert after["status"] == "online"


def test_refresh_rotates_and_reuse_is_refused(hosts: HostApi, admin: Account) -> None:
    creds = hosts.registered(admin)
    host_id = creds["host"]["id"]
    first = hosts.refresh(creds["refresh_token"])
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["host"]["id"] == host_id
    assert body["refresh_token"] != creds["refresh_token"]
    assert hosts.heartbeat(host_id, body["token"]).status_code == 204
    reused = hosts.refresh(creds["refresh_token"])
    assert reused.status_code == 401
    assert error_of(reused)["code"] == "unauthorized"
    assert hosts.refresh(body["refresh_token"]).status_code == 200
    assert hosts.refresh(body["refresh_token"]).status_code == 401
    assert hosts.refresh("hrf_unknown").status_code == 401


def test_expired_refresh_token_is_refused(
    server: LiveServer, hosts: HostApi, admin: Account
) -> None:
    creds = hosts.registered(admin)
    expire_tokens(server, creds["host"]["id"], datetime.now(UTC) - timedelta(seconds=1))
    assert hosts.refresh(creds["refresh_token"]).status_code == 401


def test_tokens_of_a_deleted_host_stop_working(
    http: httpx.Client, hosts: HostApi, admin: Account
) -> None:
    creds = hosts.registered(admin)
    host_id = creds["host"]["id"]
    assert http.delete(f"/v1/hosts/{host_id}", headers=admin.headers).status_code == 204
    assert hosts.heartbeat(host_id, creds["token"]).status_code == 401
    assert hosts.refresh(creds["refresh_token"]).status_code == 401
    assert http.get(f"/v1/hosts/{host_id}", headers=admin.headers).status_code == 404


# delete ------------------------------------------------------------------------------------


def test_delete_with_capsules_is_409_unless_forced(
    server: LiveServer, http: httpx.Client, hosts: HostApi, alice: Account
) -> None:
    host_id = hosts.registered(alice, type="byoc", team_id=alice.team_id)["host"]["id"]
    capsules = sorted(add_capsule(server, host_id, alice.team_id) for _ in range(2))
    preview = http.get(f"/v1/hosts/{host_id}/delete-preview", headers=alice.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["host"]["id"] == host_id
    assert sorted(preview.json()["sandbox_ids"]) == capsules
    refused = http.delete(f"/v1/hosts/{host_id}", headers=alice.headers)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "host_has_sandboxes"
    assert sorted(error["sandbox_ids"]) == capsules
    assert all(c.startswith("cl-") for c in error["sandbox_ids"])
    assert http.get(f"/v1/hosts/{host_id}", headers=alice.headers).status_code == 200
    forced = http.delete(f"/v1/hosts/{host_id}?force=true", headers=alice.headers)
    assert forced.status_code == 204, forced.text
    assert [capsule_status(server, c) for c in capsules] == ["stopped", "stopped"]
    assert http.get(f"/v1/hosts/{host_id}", headers=alice.headers).status_code == 404


def test_delete_permissions(
    http: httpx.Client, wrenn: Wrenn, hosts: HostApi, admin: Account, alice: Account, bob: Account
) -> None:
    regular = hosts.created(admin)["host"]["id"]
    byoc = hosts.created(alice, type="byoc", team_id=alice.team_id)["host"]["id"]
    member = wrenn.join(alice, bob)
    assert http.delete(f"/v1/hosts/{byoc}", headers=member.headers).status_code == 403
    assert http.get(f"/v1/hosts/{byoc}/delete-preview", headers=member.headers).status_code == 403
    assert http.delete(f"/v1/hosts/{regular}", headers=alice.headers).status_code == 404
    team_admin = wrenn.join(alice, wrenn.signup(name="Dora"), role="admin")
    assert http.delete(f"/v1/hosts/{byoc}", headers=team_admin.headers).status_code == 204
    assert http.delete(f"/v1/hosts/{regular}", headers=admin.headers).status_code == 204
    assert http.delete(f"/v1/hosts/{regular}", headers=admin.headers).status_code == 404


# tags --------------------------------------------------------------------------------------


def test_tags_add_list_remove(
    http: httpx.Client, wrenn: Wrenn, hosts: HostApi, alice: Account, bob: Account
) -> None:
    host_id = hosts.created(alice, type="byoc", team_id=alice.team_id)["host"]["id"]
    url = f"/v1/hosts/{host_id}/tags"
    for tag in ("gpu", "zone=eu", "gpu"):
        assert http.post(url, json={"tag": tag}, headers=alice.headers).status_code == 204
    assert http.get(url, headers=alice.headers).json() == ["gpu", "zone=eu"]
    bad = http.post(url, json={"tag": "no spaces"}, headers=alice.headers)
    assert bad.status_code == 400
    assert http.delete(f"{url}/gpu", headers=alice.headers).status_code == 204
    assert http.delete(f"{url}/gpu", headers=alice.headers).status_code == 204
    assert http.get(url, headers=alice.headers).json() == ["zone=eu"]
    member = wrenn.join(alice, bob)
    assert http.get(url, headers=member.headers).json() == ["zone=eu"]
    assert http.post(url, json={"tag": "x"}, headers=member.headers).status_code == 403
    stranger = wrenn.signup(name="Eve")
    assert http.post(url, json={"tag": "x"}, headers=stranger.headers).status_code == 404
    assert http.delete(f"{url}/zone=eu", headers=stranger.headers).status_code == 404
    assert http.get(url, headers=stranger.headers).status_code == 404


# liveness ----------------------------------------------------------------------------------


def test_silent_host_becomes_unreachable_and_comes_back(
    server: LiveServer, http: httpx.Client, hosts: HostApi, alice: Account
) -> None:
    creds = hosts.registered(alice, type="byoc", team_id=alice.team_id)
    host_id = creds["host"]["id"]
    team_id = server_team(alice)
    set_host(server, host_id, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    deadline = time.monotonic() + 3 * server.settings.hosts.reconcile_seconds + 5
    while time.monotonic() < deadline:
        status = http.get(f"/v1/hosts/{host_id}", headers=alice.headers).json()["status"]
        if status == "unreachable":
            break
        time.sleep(0.2)
    assert status == "unreachable"
    assert host_events(server, host_id) == [("host.up", team_id), ("host.down", team_id)]
    assert hosts.heartbeat(host_id, creds["token"]).status_code == 204
    assert http.get(f"/v1/hosts/{host_id}", headers=alice.headers).json()["status"] == "online"
    assert [t for t, _ in host_events(server, host_id)] == ["host.up", "host.down", "host.up"]


def server_team(account: Account) -> str:
    """The core id of an account's current team (events carry core ids)."""
    from hangar.faces.wrenn import ids

    return ids.decode(ids.TEAM, account.team_id)
