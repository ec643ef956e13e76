"""`Idempotency-Key` on every face's mutations, through live servers and a real agent.

The key, the request's hash and the answer are stored in the database in the request's own
commit: a repeat replays the answer (also after a restart, and on another replica), the same
key with another body is refused (422), and a repeat while the first still runs waits for it
or, past `HANGAR_IDEMPOTENCY__WAIT_SECONDS`, is refused (409). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hangar.core.platform import Platform
from kit.conftest import Kit, Team
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.processes import AgentProcess
from support.wrenn import error_of

CREATE = {"memory_mb": 256}


def idem(team: Team, key: str | None = None) -> dict[str, str]:
    return {**team.headers, "Idempotency-Key": key or uuid.uuid4().hex}


def capsule_count(client: httpx.Client, team: Team) -> int:
    return len(client.get("/wrenn/v1/capsules", headers=team.headers).json())


def test_twenty_concurrent_creates_with_one_key_make_one_capsule(kit: Kit, team: Team) -> None:
    headers = idem(team)

    def create(_: int) -> httpx.Response:
        with kit.client() as c:
            return c.post("/wrenn/v1/capsules", json=CREATE, headers=headers)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(create, range(20)))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.content for r in answers}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 19
    with kit.client() as c:
        assert capsule_count(c, team) == 1


def test_the_same_key_for_another_request_is_422(kit: Kit, team: Team) -> None:
    headers = idem(team)
    with kit.client() as c:
        assert c.post("/wrenn/v1/capsules", json=CREATE, headers=headers).status_code == 201
        again = c.post("/wrenn/v1/capsules", json={"memory_mb": 512}, headers=headers)
        assert again.status_code == 422, again.text
        assert error_of(again)["code"] == "idempotency_key_reused"
        vm = c.post("/fastvm/v1/vms", json={"machineType": "c1m2"}, headers=headers)
        assert vm.status_code == 422, vm.text
        assert set(vm.json()) == {"error"}
        assert capsule_count(c, team) == 1


def test_gpuaas_spelling_and_fastvm_creates_are_idempotent(kit: Kit, team: Team) -> None:
    headers = {**team.headers, "X-Idempotency-Key": uuid.uuid4().hex}
    with kit.client() as c:
        first = c.post("/fastvm/v1/vms", json={"machineType": "c1m2"}, headers=headers)
        assert first.status_code in (200, 201, 202), first.text
        second = c.post("/fastvm/v1/vms", json={"machineType": "c1m2"}, headers=headers)
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert second.headers["idempotent-replayed"] == "true"
        assert len(c.get("/fastvm/v1/vms", headers=team.headers).json()) == 1


def test_a_failed_request_gives_its_key_back(kit: Kit, team: Team) -> None:
    headers = idem(team)
    with kit.client() as c:
        refused = c.post("/wrenn/v1/capsules", json={"vcpus": 0}, headers=headers)
        assert refused.status_code == 400, refused.text
        made = c.post("/wrenn/v1/capsules", json=CREATE, headers=headers)
        assert made.status_code == 201, made.text
        assert "idempotent-replayed" not in made.headers


def test_keys_belong_to_their_principal(kit: Kit, team: Team) -> None:
    other = kit.team()
    key = uuid.uuid4().hex
    with kit.client() as c:
        mine = c.post("/wrenn/v1/capsules", json=CREATE, headers=idem(team, key))
        theirs = c.post("/wrenn/v1/capsules", json=CREATE, headers=idem(other, key))
        assert mine.status_code == theirs.status_code == 201
        assert mine.json()["id"] != theirs.json()["id"]
        assert "idempotent-replayed" not in theirs.headers
        c.delete(f"/wrenn/v1/capsules/{theirs.json()['id']}", headers=other.headers)


def test_a_key_too_long_is_400(kit: Kit, team: Team) -> None:
    with kit.client() as c:
        resp = c.post("/wrenn/v1/capsules", json=CREATE, headers=idem(team, "k" * 256))
        assert resp.status_code == 400, resp.text
        assert capsule_count(c, team) == 0


@dataclass
class Cluster:
    """One database and one agent; control planes on them start and stop at will."""

    backend: str
    root: Path
    url: str | None
    agent: AgentProcess

    @contextlib.contextmanager
    def replica(self, wait_seconds: float = 10.0) -> Iterator[LiveServer]:
        settings = make_settings(self.root / "server", self.url, None)
        settings.agents = {"local": self.agent.address}
        settings.idempotency.wait_seconds = wait_seconds
        with run_in_thread(self.backend, settings, Platform(settings)) as live:
            yield live


@contextlib.contextmanager
def cluster(backend: str, root: Path) -> Iterator[Cluster]:
    agent = AgentProcess(root / "agent", runtime="fake")
    agent.data_dir.mkdir(parents=True)
    agent.start()
    try:
        with contextlib.ExitStack() as stack:
            url = None if backend == "sqlite" else stack.enter_context(fresh_postgres_database())
            yield Cluster(backend, root, url, agent)
    finally:
        agent.stop()


def signup_key(live: LiveServer) -> dict[str, str]:
    from support.wrenn import Wrenn

    with httpx.Client(base_url=live.wrenn_url, timeout=60) as c:
        wrenn = Wrenn(c)
        account = wrenn.signup(name="Idem")
        return {"X-API-Key": wrenn.create_key(account, "idem")["key"]}


def test_a_replay_survives_a_restart(backend: str, tmp_path: Path) -> None:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    with cluster(backend, tmp_path) as hangar:
        with hangar.replica() as first:
            headers |= signup_key(first)
            made = httpx.post(f"{first.wrenn_url}/v1/capsules", json=CREATE, headers=headers)
            assert made.status_code == 201, made.text
        # A new server on the same database: only the database remembers.
        with hangar.replica() as again:
            replay = httpx.post(f"{again.wrenn_url}/v1/capsules", json=CREATE, headers=headers)
            assert (replay.status_code, replay.content) == (201, made.content)
            assert replay.headers["idempotent-replayed"] == "true"


def test_two_replicas_answer_one_key_once(backend: str, tmp_path: Path) -> None:
    with cluster(backend, tmp_path) as hangar, hangar.replica() as a, hangar.replica() as b:
        servers = (a, b)
        headers = signup_key(servers[0]) | {"Idempotency-Key": uuid.uuid4().hex}

        def create(i: int) -> httpx.Response:
            url = f"{servers[i % 2].wrenn_url}/v1/capsules"
            return httpx.post(url, json=CREATE, headers=headers, timeout=60)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(create, range(10)))
        assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
        assert len({r.content for r in answers}) == 1
        listed = httpx.get(f"{servers[1].wrenn_url}/v1/capsules", headers=headers).json()
        assert len(listed) == 1


def test_a_repeat_while_the_first_runs_is_409(backend: str, tmp_path: Path) -> None:
    """With no time to wait, repeats that find the first still running are refused."""
    with cluster(backend, tmp_path) as hangar, hangar.replica(wait_seconds=0) as live:
        headers = signup_key(live) | {"Idempotency-Key": uuid.uuid4().hex}

        def create(_: int) -> httpx.Response:
            return httpx.post(f"{live.wrenn_url}/v1/capsules", json=CREATE, headers=headers)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(create, range(20)))
        statuses = [r.status_code for r in answers]
        assert set(statuses) <= {201, 409}, [r.text for r in answers]
        assert 409 in statuses
        for refused in (r for r in answers if r.status_code == 409):
            assert error_of(refused)["code"] in ("conflict", "idempotency_key_in_flight")
        listed = httpx.get(f"{live.wrenn_url}/v1/capsules", headers=headers).json()
        assert len(listed) == 1


@pytest.mark.parametrize("method", ["GET"])
def test_reads_ignore_the_key(kit: Kit, team: Team, method: str) -> None:
    with kit.client() as c:
        for _ in range(2):
            resp = c.request(method, "/wrenn/v1/capsules", headers=idem(team, "same"))
            assert resp.status_code == 200
            assert "idempotent-replayed" not in resp.headers
