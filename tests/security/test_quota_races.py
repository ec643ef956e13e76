"""Quotas and host room hold under concurrency: a create reserves first (issue 12, issue 14).

A real control plane on SQLite and PostgreSQL with one real agent process (fake runtime, so
twenty sandboxes cost nothing); 20 creates are sent at once through each face. Before the
reservation ledger, 18 of 20 passed a quota of 5.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.clock import utcnow
from hangar.core.fleet.static import static_host_id
from hangar.core.hosts.models import Host
from hangar.core.platform import Platform
from hangar.core.quotas.models import TeamQuota
from hangar.faces.wrenn import ids
from support.hosts import db
from support.live import LiveServer, serve_on_fake_agent
from support.processes import AgentProcess, wait_until
from support.wrenn import Account, Wrenn

FACES = ["wrenn", "fastvm"]
RACERS = 20
HOST = static_host_id("local")


@dataclass
class Race:
    """The control plane (and its platform, to size its host) and its one agent."""

    live: LiveServer
    platform: Platform
    agent: AgentProcess

    def account(self) -> Account:
        with self.live.client() as c:
            return Wrenn(c).signup(name="Racer")


@pytest.fixture(scope="module")
def race(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    root = tmp_path_factory.mktemp(f"races-{backend}")
    with serve_on_fake_agent(backend, root) as (live, platform, agent):
        race = Race(live, platform, agent)
        warm_up(race)
        yield race


def warm_up(race: Race) -> None:
    """One capsule made and destroyed: the agent's `minimal` template exists from then on
    (FastVM queues a create while its host has no template yet)."""
    who = race.account()
    with race.live.client() as c:
        made = c.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers)
        assert made.status_code == 201, made.text
        c.delete(f"/v1/capsules/{made.json()['id']}", headers=who.headers)


def team_of(who: Account) -> str:
    return ids.decode(ids.TEAM, who.team_id)


def set_quota(race: Race, who: Account, **limits: int) -> None:
    with db(race.live) as s:
        s.add(TeamQuota(team_id=team_of(who), **limits))


def statuses(race: Race, who: Account) -> Counter[str]:
    """How many of the team's capsules are in each status (destroyed ones left out)."""
    with db(race.live) as s:
        rows = s.execute(
            select(Capsule.status, func.count())
            .where(Capsule.team_id == team_of(who), Capsule.status != CapsuleStatus.STOPPED)
            .group_by(Capsule.status)
        ).all()
    return Counter({str(status): int(n) for status, n in rows})


async def create_many(race: Race, face: str, who: Account, n: int = RACERS) -> list[httpx.Response]:
    """`n` creates of 1 vCPU each, all sent at once."""
    if face == "wrenn":
        path, body = "/wrenn/v1/capsules", {"vcpus": 1, "memory_mb": 256}
    else:
        path, body = "/fastvm/v1/vms", {"machineType": "c1m2"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=race.live.url, timeout=120, limits=limits) as c:
        return list(
            await asyncio.gather(*(c.post(path, json=body, headers=who.headers) for _ in range(n)))
        )


def destroy_all(race: Race, who: Account) -> None:
    with race.live.client() as c:
        for capsule in c.get("/v1/capsules", headers=who.headers).json():
            c.delete(f"/v1/capsules/{capsule['id']}", headers=who.headers)
    assert statuses(race, who) == Counter()


@pytest.fixture
def room_for_three(race: Race) -> Iterator[None]:
    """The host offers 3 vCPUs to capsules (as HANGAR_HOSTS__RESERVE_VCPUS would make it)."""
    with db(race.live) as s:
        host = s.get(Host, HOST)
        assert host is not None
        assert host.cpu_cores
        cores = host.cpu_cores
    fleet = race.platform.fleet
    before = fleet.capacity
    fleet.capacity = replace(before, cpu_overcommit=1.0, reserve_vcpus=cores - 3)
    try:
        yield
    finally:
        fleet.capacity = before


@pytest.mark.parametrize("face", FACES)
async def test_twenty_concurrent_creates_against_a_quota_of_five_give_five(
    race: Race, face: str
) -> None:
    who = race.account()
    set_quota(race, who, vcpu=5)
    try:
        answers = await create_many(race, face, who)
        codes = Counter(r.status_code for r in answers)
        made = [r for r in answers if r.status_code in (201, 202)]
        assert len(made) == 5, codes
        assert codes[403] == RACERS - 5, codes
        refused = next(r for r in answers if r.status_code == 403).text
        assert "quota exceeded for vCPUs" in refused
        assert sum(statuses(race, who).values()) == 5
        with httpx.Client(base_url=f"{race.live.url}/fastvm", timeout=30) as fvm:
            quotas = fvm.get("/v1/org/quotas", headers=who.headers).json()
        assert quotas["usage"]["vcpu"] == 5, quotas
    finally:
        destroy_all(race, who)


@pytest.mark.parametrize("face", FACES)
async def test_twenty_concurrent_creates_against_a_host_with_room_for_three(
    race: Race, face: str, room_for_three: None
) -> None:
    who = race.account()
    try:
        answers = await create_many(race, face, who)
        codes = Counter(r.status_code for r in answers)
        assert codes[201] == 3, codes
        if face == "wrenn":
            assert codes[503] == RACERS - 3, codes  # host_unavailable: no room
            assert statuses(race, who) == Counter({"running": 3})
            return
        # FastVM queues what no host can take: the provisioner must not overfill either.
        assert codes[202] == RACERS - 3, codes
        time.sleep(2.0)  # several provisioner ticks
        assert statuses(race, who) == Counter({"running": 3, "pending": RACERS - 3})
        running = [r.json()["id"] for r in answers if r.status_code == 201]
        with httpx.Client(base_url=f"{race.live.url}/fastvm", timeout=60) as fvm:
            assert fvm.delete(f"/v1/vms/{running[0]}", headers=who.headers).status_code == 200
        # The room freed is taken by exactly one queued VM.
        wait_until(
            "a queued VM to start in the room freed",
            lambda: statuses(race, who) == Counter({"running": 3, "pending": RACERS - 4}),
        )
        time.sleep(1.0)
        assert statuses(race, who) == Counter({"running": 3, "pending": RACERS - 4})
    finally:
        destroy_all(race, who)


@pytest.mark.parametrize("face", FACES)
def test_a_failed_start_releases_its_reservation(race: Race, face: str) -> None:
    who = race.account()
    set_quota(race, who, vcpu=1)
    # A ready snapshot whose files its host does not have: the host refuses every start.
    broken = Template(
        team_id=team_of(who),
        name="broken",
        host_template=f"snap-missing-{team_of(who)}",
        host_id=HOST,
        vcpus=1,
        memory_mb=256,
        status=SnapshotStatus.READY,
        disk_gb=10,
    )
    with db(race.live) as s:
        s.add(broken)
        s.flush()
        snapshot_id = broken.id
    try:
        with race.live.client() as c, httpx.Client(base_url=f"{race.live.url}/fastvm") as fvm:
            for _ in range(3):  # each failure gives the one vCPU back
                if face == "wrenn":
                    failed = c.post(
                        "/v1/capsules", json={"template": "broken"}, headers=who.headers
                    )
                else:
                    failed = fvm.post(
                        "/v1/vms", json={"snapshotId": snapshot_id}, headers=who.headers
                    )
                assert failed.status_code >= 400, failed.text
                assert "quota" not in failed.text
                assert statuses(race, who) == Counter()
            # The quota is whole again: a create that works takes it.
            ok = c.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers)
            assert ok.status_code == 201, ok.text
    finally:
        destroy_all(race, who)
        with db(race.live) as s:
            s.execute(delete(Template).where(Template.id == snapshot_id))


def _note_destroy(race: Race, wire_id: str) -> None:
    """As a destroy does before asking the host, dated as if its replica died since."""
    with db(race.live) as s:
        s.execute(
            update(Capsule)
            .where(Capsule.id == ids.decode(ids.CAPSULE, wire_id))
            .values(destroying_since=utcnow() - timedelta(minutes=5))
        )


def test_a_destroy_interrupted_by_a_crash_is_finished_and_releases_the_quota(
    race: Race,
) -> None:
    who = race.account()
    set_quota(race, who, vcpu=2)
    with race.live.client() as c:
        gone, kept = (
            c.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers).json()["id"]
            for _ in range(2)
        )
        assert c.post("/v1/capsules", json={}, headers=who.headers).status_code == 403
        # Crashed after the host destroyed it, before its row was written: the reconciler
        # finishes the destroy (no `missing` capsule left holding the quota).
        _note_destroy(race, gone)
        with race.agent.direct() as agent:
            sandbox = ids.decode(ids.CAPSULE, gone)
            assert agent.delete(f"/v1/sandboxes/{sandbox}").status_code in (200, 204)
        # Crashed before the host was asked: the reconciler asks it, then records it done.
        _note_destroy(race, kept)
        wait_until("both destroys finished", lambda: statuses(race, who) == Counter(), timeout=30)
        with race.agent.direct() as agent:
            left = {s["sandbox_id"] for s in agent.get("/v1/sandboxes").json()}
        assert ids.decode(ids.CAPSULE, kept) not in left
        for wire_id in (gone, kept):
            got = c.get(f"/v1/capsules/{wire_id}", headers=who.headers)
            assert got.status_code == 404, got.text
        again = c.post("/v1/capsules", json={"vcpus": 2, "memory_mb": 256}, headers=who.headers)
        assert again.status_code == 201, again.text
    destroy_all(race, who)


@pytest.mark.parametrize("face", FACES)
async def test_concurrent_snapshots_never_pass_the_snapshot_quota(race: Race, face: str) -> None:
    who = race.account()
    set_quota(race, who, snapshot_count=2)
    n = 6
    with race.live.client() as c:
        sources = [
            c.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers).json()["id"]
            for _ in range(n if face == "wrenn" else 1)
        ]
    async with httpx.AsyncClient(base_url=race.live.url, timeout=120) as c:
        if face == "wrenn":  # each snapshot destroys its capsule, so one capsule each
            calls = [
                c.post(
                    "/wrenn/v1/snapshots",
                    json={"sandbox_id": capsule, "name": f"race-{i}"},
                    headers=who.headers,
                )
                for i, capsule in enumerate(sources)
            ]
        else:
            vm = ids.decode(ids.CAPSULE, sources[0])
            calls = [
                c.post("/fastvm/v1/snapshots", json={"vmId": vm}, headers=who.headers)
                for _ in range(n)
            ]
        answers = await asyncio.gather(*calls)
    codes = Counter(r.status_code for r in answers)
    try:
        assert codes[201] == 2, codes
        assert codes[403 if face == "wrenn" else 409] == n - 2, codes
        with db(race.live) as s:
            kept = s.scalar(
                select(func.count()).select_from(Template).where(Template.team_id == team_of(who))
            )
        assert kept == 2
    finally:
        with db(race.live) as s:
            names = list(
                s.scalars(select(Template.name).where(Template.team_id == team_of(who))).all()
            )
        with race.live.client() as c:
            for name in names:
                c.delete(f"/v1/snapshots/{name}", headers=who.headers)
        destroy_all(race, who)
