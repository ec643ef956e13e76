"""Hosts going away and coming back: capsules become `missing`, then match the agent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from fleet.conftest import Fleet
from fleet.helpers import (
    ONE,
    TWO,
    capsule_row,
    created,
    destroy_all,
    hangar_host,
    host_of,
    host_row,
    wire_host,
)
from hangar.faces.wrenn import ids
from support.hosts import HostApi, add_capsule, host_events, make_platform_admin, set_host
from support.processes import wait_until
from support.wrenn import Account, Wrenn


def status_of(api: httpx.Client, who: Account, capsule: str) -> str:
    status: str = api.get(f"/v1/capsules/{capsule}", headers=who.headers).json()["status"]
    return status


def test_unreachable_agent_capsules_go_missing_and_are_found_again(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    agent = fleet.agents["one"]
    try:
        made = [created(api, team) for _ in range(4)]
        on_one = [c for c in made if host_of(fleet.live, c) == ONE]
        on_two = [c for c in made if host_of(fleet.live, c) == TWO]
        assert len(on_one) == 2
        keep, lose = on_one
        agent.freeze()
        wait_until(
            "host one unreachable", lambda: host_row(fleet.live, ONE).status == "unreachable"
        )
        # Same transaction as the host's change: no poll in between.
        for capsule in on_one:
            row = capsule_row(fleet.live, capsule)
            assert row.status == "missing"
            assert "unreachable" in (row.status_reason or "")
        assert [status_of(api, team, c) for c in on_two] == ["running", "running"]
        agent.thaw()
        # Back, but one of its capsules is gone (whether or not a poll saw it first, it ends
        # up missing: the agent no longer has it).
        with agent.direct() as direct:
            lost = ids.decode(ids.CAPSULE, lose)
            assert direct.delete(f"/v1/sandboxes/{lost}").status_code == 204
        wait_until("host one online", lambda: host_row(fleet.live, ONE).status == "online")
        wait_until("capsule found", lambda: status_of(api, team, keep) == "running")
        out = api.post(f"/v1/capsules/{keep}/exec", json={"cmd": "echo back"}, headers=team.headers)
        assert out.json()["stdout"] == "back\n"
        # A poll may have seen it before the delete: the next one finds it gone.
        wait_until("lost capsule missing", lambda: status_of(api, team, lose) == "missing")
        assert "no longer has" in (capsule_row(fleet.live, lose).status_reason or "")
        types = [t for t, _ in host_events(fleet.live, wire_host(ONE))]
        assert types[0] == "host.up"
        assert types[-2:] == ["host.down", "host.up"]
        assert types.count("host.down") == 1  # once per transition, not once per poll
    finally:
        agent.thaw()
        destroy_all(api, team)


def test_silent_registered_host_capsules_go_missing(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    admin = make_platform_admin(fleet.live, Wrenn(api).signup(name="Admin"))
    hosts = HostApi(api)
    creds = hosts.registered(admin)
    host_id = creds["host"]["id"]
    capsule = add_capsule(fleet.live, host_id, team.team_id)
    hangar_host(fleet.live, "drain", host_id)
    set_host(fleet.live, host_id, last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    core = ids.decode(ids.HOST, host_id)
    wait_until("host unreachable", lambda: host_row(fleet.live, core).status == "unreachable")
    row = capsule_row(fleet.live, capsule)
    assert row.status == "missing"
    assert "no heartbeat" in (row.status_reason or "")
    # A heartbeat brings the host back; a drained host comes back draining.
    assert hosts.heartbeat(host_id, creds["token"]).status_code == 204
    assert host_row(fleet.live, core).status == "draining"
    hangar_host(fleet.live, "undrain", host_id)
    assert host_row(fleet.live, core).status == "online"
    assert api.delete(f"/v1/hosts/{host_id}?force=true", headers=admin.headers).status_code == 204
