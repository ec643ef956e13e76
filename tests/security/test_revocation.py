"""Revocation: a removed member's, and a deleted team's, credentials stop working at once.

A user JWT lives for hours; every request re-checks the membership and the team behind it, on
every face, the WebSocket streams and `/events` (where an open stream ends too). Deleting a
team destroys its capsules on the agent and refuses its owner's tokens and its keys. Capsules
run on a real jail agent (support/jail_agent.py), once per backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from websockets.exceptions import InvalidStatus

from capsules.helpers import open_ws, run
from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.identity.models import Team
from hangar.faces.wrenn import ids
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess, wait_until
from support.wrenn import Account, Wrenn, bearer, error_of

agent = jail_agent.agent  # one jail agent per backend

WAIT = 30.0


@pytest.fixture(scope="module")
def live(
    backend: str, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with serve_on_agent(backend, tmp_path_factory.mktemp(f"revocation-{backend}"), agent) as s:
        yield s


@pytest.fixture
def wrenn(live: LiveServer) -> Iterator[Wrenn]:
    with httpx.Client(base_url=live.wrenn_url, timeout=300.0) as client:
        yield Wrenn(client)


@pytest.fixture
def fvm(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.url}/fastvm", timeout=60.0) as client:
        yield client


def sandboxes(agent: AgentProcess) -> set[str]:
    """The sandboxes the agent itself runs (not what the control plane believes)."""
    with agent.direct() as c:
        return {s["sandbox_id"] for s in c.get("/v1/sandboxes").json()}


def create_capsule(wrenn: Wrenn, headers: dict[str, str]) -> dict[str, Any]:
    resp = wrenn.http.post("/v1/capsules", json={"memory_mb": 256}, headers=headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


@dataclass
class OpenEvents:
    """`GET /events` read in a thread: its status, its lines, and when it ended."""

    url: str
    token: str
    status: int | None = None
    lines: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def start(self) -> OpenEvents:
        threading.Thread(target=self._read, daemon=True).start()
        assert self.connected.wait(WAIT), f"never connected: {self.status} {self.lines}"
        return self

    def _read(self) -> None:
        try:
            timeout = httpx.Timeout(WAIT, read=120.0)
            with httpx.stream(
                "GET", f"{self.url}/events", headers=bearer(self.token), timeout=timeout
            ) as resp:
                self.status = resp.status_code
                for line in resp.iter_lines():
                    self.lines.append(line)
                    if line == ": connected":
                        self.connected.set()
        finally:
            self.ended.set()


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert error_of(resp)["code"] == "unauthorized"


def assert_refused_fastvm(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert set(resp.json()) == {"error"}


def test_a_removed_members_token_is_refused_at_once_everywhere(
    live: LiveServer, wrenn: Wrenn, fvm: httpx.Client
) -> None:
    owner = wrenn.signup(name="Owner")
    member = wrenn.join(owner, wrenn.signup(name="Member"))
    http, mh = wrenn.http, member.headers

    # Everything works for the member while they belong...
    capsule = create_capsule(wrenn, mh)
    cid = capsule["id"]
    assert run(http, member, cid, "echo", args=["hi"])["stdout"] == "hi\n"
    assert http.get("/v1/capsules", headers=mh).status_code == 200
    assert http.get("/v1/channels", headers=mh).status_code == 200
    assert fvm.get("/v1/vms", headers=mh).status_code == 200
    with open_ws(http, member, f"/v1/capsules/{cid}/exec/stream"):
        pass
    stream = OpenEvents(live.url, member.token).start()
    assert stream.status == 200

    removed = http.delete(
        f"/v1/teams/{owner.team_id}/members/{member.user_id}", headers=owner.headers
    )
    assert removed.status_code == 204
    gone_at = time.monotonic()

    # ...and nothing does from the removal on, whatever the route.
    assert_refused(http.get("/v1/capsules", headers=mh))
    assert_refused(http.get(f"/v1/capsules/{cid}", headers=mh))
    assert_refused(http.post("/v1/capsules", json={"memory_mb": 256}, headers=mh))
    assert_refused(http.post(f"/v1/capsules/{cid}/exec", json={"cmd": "id"}, headers=mh))
    assert_refused(http.post(f"/v1/capsules/{cid}/files/list", json={"path": "/"}, headers=mh))
    assert_refused(http.delete(f"/v1/capsules/{cid}", headers=mh))
    assert_refused(http.get("/v1/channels", headers=mh))
    assert_refused(
        http.post(
            "/v1/channels",
            json={
                "name": "leak",
                "provider": "webhook",
                "config": {"url": "https://example.com/hook"},
                "events": ["capsule.created"],
            },
            headers=mh,
        )
    )
    assert_refused(http.post("/v1/api-keys", json={"name": "k"}, headers=mh))
    assert_refused(http.get(f"/v1/teams/{owner.team_id}", headers=mh))
    assert_refused(http.post("/v1/auth/switch-team", json={"team_id": owner.team_id}, headers=mh))
    assert_refused_fastvm(fvm.get("/v1/vms", headers=mh))
    assert_refused_fastvm(fvm.post("/v1/vms", json={"machineType": "c1m2"}, headers=mh))
    assert_refused_fastvm(fvm.get("/v1/org/quotas", headers=mh))
    with pytest.raises(InvalidStatus) as denied:
        open_ws(http, member, f"/v1/capsules/{cid}/exec/stream")
    assert denied.value.response.status_code == 401
    events = httpx.get(f"{live.url}/events", headers=mh, timeout=WAIT)
    assert events.status_code == 401

    # The stream that was open ends on the removal (well before its next ping would check).
    assert stream.ended.wait(WAIT), "the removed member's event stream stayed open"
    assert time.monotonic() - gone_at < 10.0

    # The team and its capsule are untouched for the owner.
    got = http.get(f"/v1/capsules/{cid}", headers=owner.headers)
    assert got.status_code == 200
    assert got.json()["status"] == "running"
    assert http.delete(f"/v1/capsules/{cid}", headers=owner.headers).status_code == 204


def test_leaving_a_team_ends_the_tokens_access(wrenn: Wrenn) -> None:
    owner = wrenn.signup(name="Owner")
    member = wrenn.join(owner, wrenn.signup(name="Leaver"))
    assert wrenn.http.get("/v1/capsules", headers=member.headers).status_code == 200
    left = wrenn.http.post(f"/v1/teams/{owner.team_id}/leave", headers=member.headers)
    assert left.status_code == 204
    assert_refused(wrenn.http.get("/v1/capsules", headers=member.headers))
    # Their other teams are theirs still: a fresh login works.
    assert wrenn.login(member.email, member.password).status_code == 200


def test_a_changed_role_is_read_from_the_database(wrenn: Wrenn) -> None:
    owner = wrenn.signup(name="Owner")
    admin = wrenn.join(owner, wrenn.signup(name="Admin"), role="admin")
    demoted = wrenn.http.patch(
        f"/v1/teams/{owner.team_id}/members/{admin.user_id}",
        json={"role": "member"},
        headers=owner.headers,
    )
    assert demoted.status_code == 204
    # The token still says "admin"; the database says otherwise.
    resp = wrenn.http.patch(
        f"/v1/teams/{owner.team_id}", json={"name": "Renamed"}, headers=admin.headers
    )
    assert resp.status_code == 403


def _team_account(wrenn: Wrenn) -> Account:
    return wrenn.new_team_as(wrenn.signup(name="Founder"), "Doomed Lab")


def test_deleting_a_team_destroys_its_capsules_and_refuses_its_credentials(
    live: LiveServer, wrenn: Wrenn, fvm: httpx.Client, agent: AgentProcess
) -> None:
    owner = _team_account(wrenn)
    member = wrenn.join(owner, wrenn.signup(name="Member"))
    key = wrenn.create_key(owner)["key"]
    kh = {"X-API-Key": key}
    running = create_capsule(wrenn, kh)
    paused = create_capsule(wrenn, owner.headers)
    assert wrenn.http.post(f"/v1/capsules/{paused['id']}/pause", headers=kh).status_code == 200
    core_ids = {ids.decode(ids.CAPSULE, c["id"]) for c in (running, paused)}
    assert core_ids <= sandboxes(agent)
    stream = OpenEvents(live.url, owner.token).start()

    resp = wrenn.http.delete(f"/v1/teams/{owner.team_id}", headers=owner.headers)
    assert resp.status_code == 204, resp.text

    # Really gone on the agent by the time the deletion answers.
    assert not core_ids & sandboxes(agent)
    # Every credential acting for the team is refused, on every face.
    for headers in (owner.headers, member.headers, kh):
        assert_refused(wrenn.http.get("/v1/capsules", headers=headers))
        assert_refused(wrenn.http.post("/v1/capsules", json={"memory_mb": 256}, headers=headers))
        assert_refused_fastvm(fvm.get("/v1/vms", headers=headers))
        assert_refused_fastvm(fvm.post("/v1/vms", json={"machineType": "c1m2"}, headers=headers))
    assert httpx.get(f"{live.url}/events", headers=owner.headers, timeout=WAIT).status_code == 401
    assert stream.ended.wait(WAIT), "the deleted team's event stream stayed open"
    # The founder's own personal team is unaffected: they sign in again to it.
    again = wrenn.login(owner.email, owner.password)
    assert again.status_code == 200
    assert again.json()["team_id"] != owner.team_id


async def test_a_capsule_left_live_in_a_deleted_team_is_swept(
    live: LiveServer, wrenn: Wrenn, agent: AgentProcess
) -> None:
    """As a create that raced the deletion would leave one: the reconciler destroys it."""
    owner = _team_account(wrenn)
    capsule = create_capsule(wrenn, owner.headers)
    core_id = ids.decode(ids.CAPSULE, capsule["id"])
    assert core_id in sandboxes(agent)

    database = Database(live.settings.resolved_database_url())
    try:
        async with database.session() as session:  # deleted behind the API's back
            await session.execute(
                update(Team)
                .where(Team.id == ids.decode(ids.TEAM, owner.team_id))
                .values(deleted_at=utcnow())
            )
            await session.commit()
    finally:
        await database.dispose()

    wait_until("the sweep to destroy the capsule", lambda: core_id not in sandboxes(agent), WAIT)
    assert_refused(wrenn.http.get("/v1/capsules", headers=owner.headers))
