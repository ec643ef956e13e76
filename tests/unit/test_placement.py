"""The placement rule: least-loaded, within capacity, only accepting hosts, BYOC isolation."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.core.errors import Unavailable
from hangar.core.fleet.placement import (
    Candidate,
    Capacity,
    Request,
    check_host,
    choose,
    fits,
)
from hangar.core.fleet.static import STATIC_HOST_NAMESPACE, static_host_id
from hangar.core.hosts.models import HostStatus, HostType

EXACT = Capacity(cpu_overcommit=1.0, memory_overcommit=1.0, reserve_vcpus=0, reserve_memory_mb=0)


def host(
    host_id: str,
    *,
    cpus: int = 4,
    memory: int = 4096,
    used: tuple[int, int] = (0, 0),
    status: str = HostStatus.ONLINE,
    connected: bool = True,
    team: str | None = None,
) -> Candidate:
    return Candidate(
        host_id=host_id,
        type=HostType.BYOC if team else HostType.REGULAR,
        team_id=team,
        status=status,
        connected=connected,
        cpu_cores=cpus,
        memory_mb=memory,
        used_vcpus=used[0],
        used_memory_mb=used[1],
    )


def code(exc: pytest.ExceptionInfo[Unavailable]) -> str:
    return exc.value.code


def test_least_loaded_host_wins() -> None:
    busy = host("a", used=(3, 1024))
    idle = host("b", used=(1, 512))
    assert choose([busy, idle], Request("t", 1, 256), EXACT).host_id == "b"


def test_load_is_a_share_of_each_host() -> None:
    # 2 of 16 vCPUs used is less loaded than 1 of 2, though it has fewer free in... neither.
    big = host("big", cpus=16, memory=32768, used=(2, 4096))
    small = host("small", cpus=2, memory=4096, used=(1, 256))
    assert choose([small, big], Request("t", 1, 256), EXACT).host_id == "big"


def test_ties_are_stable() -> None:
    hosts = [host("b"), host("a"), host("c")]
    assert choose(hosts, Request("t", 1, 256), EXACT).host_id == "a"


def test_overcommit_and_reserve() -> None:
    capacity = Capacity(
        cpu_overcommit=4.0, memory_overcommit=1.5, reserve_vcpus=1, reserve_memory_mb=512
    )
    h = host("a", cpus=2, memory=2048, used=(6, 2000))
    # 2 x 4 - 1 - 6 = 1 vCPU free; 2048 x 1.5 - 512 - 2000 = 560 MB free.
    assert fits(h, Request("t", 1, 560), capacity)
    assert not fits(h, Request("t", 2, 256), capacity)
    assert not fits(h, Request("t", 1, 561), capacity)


def test_full_hosts_are_no_capacity() -> None:
    full = host("a", cpus=2, memory=1024, used=(2, 512))
    with pytest.raises(Unavailable) as exc:
        choose([full], Request("t", 1, 256), EXACT)
    assert code(exc) == "no_capacity"


@pytest.mark.parametrize(
    "status",
    [HostStatus.PENDING, HostStatus.DRAINING, HostStatus.OFFLINE, HostStatus.UNREACHABLE],
)
def test_only_online_hosts_take_capsules(status: str) -> None:
    with pytest.raises(Unavailable) as exc:
        choose([host("a", status=status)], Request("t", 1, 256), EXACT)
    assert code(exc) == "host_unavailable"
    assert choose([host("a", status=status), host("b")], Request("t", 1, 256), EXACT).host_id == "b"


def test_disconnected_hosts_take_nothing() -> None:
    with pytest.raises(Unavailable) as exc:
        choose([host("a", connected=False)], Request("t", 1, 256), EXACT)
    assert code(exc) == "host_unavailable"


def test_no_hosts_at_all() -> None:
    with pytest.raises(Unavailable) as exc:
        choose([], Request("t", 1, 256), EXACT)
    assert code(exc) == "host_unavailable"


def test_byoc_hosts_only_take_their_team() -> None:
    mine = host("mine", team="t1")
    with pytest.raises(Unavailable):
        choose([mine], Request("t2", 1, 256), EXACT)
    assert choose([mine], Request("t1", 1, 256), EXACT).host_id == "mine"


def test_own_byoc_hosts_come_first_then_regular_ones() -> None:
    mine = host("mine", team="t1", used=(3, 3000))
    shared = host("shared")
    assert choose([shared, mine], Request("t1", 1, 256), EXACT).host_id == "mine"
    # Full BYOC hosts overflow to regular ones unless the team is pinned.
    assert choose([shared, mine], Request("t1", 2, 256), EXACT).host_id == "shared"
    with pytest.raises(Unavailable) as exc:
        choose([shared, mine], Request("t1", 2, 256, byoc_only=True), EXACT)
    assert code(exc) == "no_capacity"


def test_pinned_team_without_byoc_hosts() -> None:
    with pytest.raises(Unavailable) as exc:
        choose([host("shared")], Request("t1", 1, 256, byoc_only=True), EXACT)
    assert code(exc) == "host_unavailable"
    assert "BYOC" in exc.value.message


def test_unknown_sizes_take_nothing() -> None:
    unknown = Candidate("a", HostType.REGULAR, None, HostStatus.ONLINE, True, None, None)
    with pytest.raises(Unavailable) as exc:
        choose([unknown], Request("t", 1, 128), EXACT)
    assert code(exc) == "no_capacity"


def test_check_host_for_snapshots() -> None:
    r = Request("t", 1, 256)
    assert check_host(host("a"), r, EXACT).host_id == "a"
    for bad, expected in [
        (None, "host_unavailable"),
        (host("a", status=HostStatus.DRAINING), "host_unavailable"),
        (host("a", connected=False), "host_unavailable"),
        (host("a", team="other"), "host_unavailable"),
        (host("a", cpus=1, used=(1, 0)), "no_capacity"),
    ]:
        with pytest.raises(Unavailable) as exc:
            check_host(bad, r, EXACT)
        assert code(exc) == expected


def test_static_host_ids_are_stable_and_match_the_migration() -> None:
    from importlib import import_module

    migration = import_module("hangar.core.db.migrations.versions.0007_fleet")
    assert migration.STATIC_HOST_NAMESPACE == STATIC_HOST_NAMESPACE
    assert static_host_id("local") == static_host_id("local")
    assert static_host_id("local") != static_host_id("other")
    assert uuid.UUID(static_host_id("local")).version == 5


# properties ----------------------------------------------------------------------------------

TEAMS = ["t1", "t2", "t3"]
candidates = st.lists(
    st.builds(
        host,
        st.uuids().map(str),
        cpus=st.integers(0, 64),
        memory=st.integers(0, 65536),
        used=st.tuples(st.integers(0, 128), st.integers(0, 131072)),
        status=st.sampled_from(list(HostStatus)),
        connected=st.booleans(),
        team=st.sampled_from([None, *TEAMS]),
    ),
    max_size=8,
)
requests = st.builds(
    Request,
    st.sampled_from(TEAMS),
    st.integers(1, 16),
    st.integers(128, 16384),
    st.booleans(),
)
capacities = st.builds(
    Capacity,
    st.floats(0.5, 16),
    st.floats(0.5, 4),
    st.floats(0, 4),
    st.integers(0, 2048),
)


@given(candidates, requests, capacities)
def test_placement_properties(hosts: list[Candidate], r: Request, capacity: Capacity) -> None:
    eligible = [
        h
        for h in hosts
        if h.status == HostStatus.ONLINE
        and h.connected
        and (h.team_id == r.team_id if h.type == HostType.BYOC else not r.byoc_only)
    ]
    if not [h for h in eligible if fits(h, r, capacity)]:
        with pytest.raises(Unavailable) as exc:
            choose(hosts, r, capacity)
        assert exc.value.code == ("no_capacity" if eligible else "host_unavailable")
        return
    chosen = choose(hosts, r, capacity)
    assert chosen in hosts
    # Never over capacity, never a host that is not online and connected.
    free_cpus, free_memory = chosen.free(capacity)
    assert r.vcpus <= free_cpus
    assert r.memory_mb <= free_memory
    assert chosen.status == HostStatus.ONLINE
    assert chosen.connected
    # BYOC isolation: another team's host never; a pinned team only its own.
    if chosen.type == HostType.BYOC:
        assert chosen.team_id == r.team_id
    else:
        assert not r.byoc_only
        assert not [
            h
            for h in hosts
            if h.type == HostType.BYOC
            and h.team_id == r.team_id
            and h.status == HostStatus.ONLINE
            and h.connected
            and fits(h, r, capacity)
        ], "the team's own BYOC host with room comes first"


def test_a_host_lacking_programs_is_passed_by() -> None:
    sick = Candidate(
        host_id="sick",
        type=HostType.REGULAR,
        team_id=None,
        status=HostStatus.ONLINE,
        connected=True,
        cpu_cores=64,
        memory_mb=65536,
        missing="missing host programs: bwrap; install them with: apt-get install bubblewrap",
    )
    assert choose([sick, host("well")], Request("t", 1, 256), EXACT).host_id == "well"
    with pytest.raises(Unavailable) as exc:
        choose([sick, host("down", status=HostStatus.OFFLINE)], Request("t", 1, 256), EXACT)
    assert code(exc) == "host_unhealthy"
    assert "bwrap" in exc.value.message
    assert "apt-get install bubblewrap" in exc.value.message
    with pytest.raises(Unavailable) as exc:
        check_host(sick, Request("t", 1, 256), EXACT)
    assert code(exc) == "host_unhealthy"
    assert "bubblewrap" in exc.value.message
