"""Least-loaded placement across real agents, draining, BYOC hosts and pinning (real API)."""

from __future__ import annotations

from collections import Counter

import httpx

from fleet.conftest import Fleet
from fleet.helpers import (
    ONE,
    TWO,
    create,
    created,
    destroy_all,
    hangar_host,
    host_of,
    host_row,
    size_hosts,
    wire_host,
)
from hangar.agentproto.client import AgentClient
from hangar.core.fleet.gateway import AgentHandle
from hangar.faces.wrenn import ids
from support.hosts import HostApi, make_platform_admin
from support.wrenn import Account, Wrenn, error_of


def test_configured_agents_are_regular_host_rows(fleet: Fleet, api: httpx.Client) -> None:
    admin = make_platform_admin(fleet.live, Wrenn(api).signup(name="Admin"))
    listed = {h["id"]: h for h in api.get("/v1/hosts", headers=admin.headers).json()}
    for core_id in (ONE, TWO):
        host = listed[wire_host(core_id)]
        assert host["type"] == "regular"
        assert host["status"] == "online"
        assert host["cpu_cores"] == 2  # as sized by the fixture; the agent reported its own
    assert host_row(fleet.live, ONE).last_heartbeat_at is not None


def test_capsules_spread_least_loaded_until_full(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    try:
        made = [created(api, team) for _ in range(4)]
        hosts = [host_of(fleet.live, c) for c in made]
        assert hosts[0] != hosts[1]  # the second goes to the emptier host
        assert Counter(hosts) == {ONE: 2, TWO: 2}
        full = create(api, team)
        assert full.status_code == 503
        assert error_of(full)["code"] == "host_unavailable"
        assert "free" in error_of(full)["message"]
        # Memory counts too: 2048 MB hosts cannot take 4096 MB whatever their vCPUs.
        api.delete(f"/v1/capsules/{made[0]}", headers=team.headers)
        assert create(api, team, memory_mb=4096).status_code == 503
        # A destroyed capsule's room is free again.
        assert host_of(fleet.live, created(api, team)) == hosts[0]
    finally:
        destroy_all(api, team)


def test_draining_host_receives_nothing_and_keeps_its_capsules(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    admin = make_platform_admin(fleet.live, Wrenn(api).signup(name="Admin"))
    try:
        keep = created(api, team)
        drained = host_of(fleet.live, keep)
        other = TWO if drained == ONE else ONE
        hangar_host(fleet.live, "drain", wire_host(drained))
        got = api.get(f"/v1/hosts/{wire_host(drained)}", headers=admin.headers).json()
        assert got["status"] == "draining"
        assert [host_of(fleet.live, created(api, team)) for _ in range(2)] == [other, other]
        # The drained host has room, but takes nothing.
        assert create(api, team).status_code == 503
        out = api.post(
            f"/v1/capsules/{keep}/exec", json={"cmd": "echo still"}, headers=team.headers
        )
        assert out.status_code == 200, out.text
        assert out.json()["stdout"] == "still\n"
        hangar_host(fleet.live, "undrain", drained)  # the core UUID works too
        got = api.get(f"/v1/hosts/{wire_host(drained)}", headers=admin.headers).json()
        assert got["status"] == "online"
        assert host_of(fleet.live, created(api, team)) == drained
    finally:
        hangar_host(fleet.live, "undrain", drained)
        destroy_all(api, team)


def test_byoc_host_takes_only_its_team_and_a_team_can_pin_to_it(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    hosts = HostApi(api)
    creds = hosts.registered(team, type="byoc", team_id=team.team_id)
    byoc = ids.decode(ids.HOST, creds["host"]["id"])
    size_hosts(fleet.live, byoc)
    # Joined the way an agent's uplink joins it.
    client = AgentClient(fleet.agents["three"].address)
    fleet.platform.fleet.add(AgentHandle(byoc, client))
    stranger = Wrenn(api).signup(name="Stranger")
    try:
        # The team's own host comes first...
        mine = [host_of(fleet.live, created(api, team)) for _ in range(2)]
        assert mine == [byoc, byoc]
        # ...then it overflows to regular hosts, unless pinned.
        assert host_of(fleet.live, created(api, team)) in (ONE, TWO)
        hangar_host(fleet.live, "pin", team.team_id)
        refused = create(api, team)
        assert refused.status_code == 503
        assert "free" in error_of(refused)["message"]
        # Other teams never land on it, even with room there and none elsewhere.
        destroy_all(api, team)
        others = [host_of(fleet.live, created(api, stranger)) for _ in range(4)]
        assert byoc not in others
        assert create(api, stranger).status_code == 503
        assert host_of(fleet.live, created(api, team)) == byoc
        hangar_host(fleet.live, "unpin", team.team_id)
    finally:
        destroy_all(api, team, stranger)
        fleet.platform.fleet.remove(byoc, client)
        api.delete(f"/v1/hosts/{creds['host']['id']}?force=true", headers=team.headers)


def test_pinned_team_without_byoc_hosts_is_refused(
    fleet: Fleet, api: httpx.Client, team: Account
) -> None:
    hangar_host(fleet.live, "pin", team.team_id)
    refused = create(api, team)
    assert refused.status_code == 503
    assert "BYOC" in error_of(refused)["message"]
    hangar_host(fleet.live, "unpin", team.team_id)
    assert host_of(fleet.live, created(api, team)) in (ONE, TWO)
    destroy_all(api, team)
