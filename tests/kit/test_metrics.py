"""`/metrics` on the main port (issue 13, item 8): after a workload through both faces and a
real agent (fake runtime), a Prometheus text-format parser sees the counters move, with
bounded labels (route templates, never raw paths). Also: the log format and quiet polls."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import structlog
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from hangar.core.channels.models import Channel, Delivery, DeliveryStatus
from hangar.core.clock import utcnow
from hangar.core.metrics import Metrics
from hangar.core.platform import Platform
from hangar.faces.wrenn import ids
from hangar.web.logging import configure_logging, routine_request
from hangar.web.metrics import RequestMetrics
from support.hosts import db
from support.live import LiveServer, serve_on_fake_agent
from support.wrenn import Account, Wrenn

UNKNOWN_CAPSULE = "cl-" + "0" * 25


@dataclass
class Scrape:
    """The samples of one `/metrics` answer."""

    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def scrape(live: LiveServer) -> Scrape:
    resp = httpx.get(f"{live.url}/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    families = text_string_to_metric_families(resp.text)
    return Scrape([sample for family in families for sample in family.samples])


@dataclass
class Served:
    live: LiveServer
    platform: Platform


@pytest.fixture(scope="module")
def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp(f"metrics-{backend}")
    with serve_on_fake_agent(backend, root) as (live, platform, _):
        yield Served(live, platform)


def workload(live: LiveServer) -> tuple[Account, str]:
    """Sign up, make an API key, answer 200s and 404s on both faces, create a capsule."""
    with live.client() as c:
        who = Wrenn(c).signup(name="Metrics")
        key = c.post("/v1/api-keys", json={"name": "ci"}, headers=who.headers)
        assert key.status_code == 201, key.text
        api = {"X-API-Key": key.json()["key"]}
        assert c.get("/v1/capsules", headers=api).status_code == 200
        for _ in range(2):
            assert c.get(f"/v1/capsules/{UNKNOWN_CAPSULE}", headers=api).status_code == 404
        assert c.get("/v1/no-such-thing", headers=api).status_code == 404
        made = c.post("/v1/capsules", json={"memory_mb": 256}, headers=who.headers)
        assert made.status_code == 201, made.text
    with httpx.Client(base_url=f"{live.url}/fastvm", timeout=30) as f:
        assert f.get("/v1/vms", headers=api).status_code == 200
        assert f.get("/v1/vms/00000000-0000-0000-0000-000000000000", headers=api).status_code == 404
    return who, made.json()["id"]


def test_metrics_after_a_workload(served: Served) -> None:
    live = served.live
    before = scrape(live)
    who, capsule_id = workload(live)
    after = scrape(live)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = "hangar_http_requests_total"
    assert moved(requests, face="wrenn", route="/v1/auth/signup", method="POST", status="201") == 1
    assert moved(requests, face="wrenn", route="/v1/api-keys", method="POST", status="201") == 1
    assert moved(requests, face="wrenn", route="/v1/capsules", method="GET", status="200") == 1
    assert moved(requests, face="wrenn", route="/v1/capsules/{id}", status="404") == 2
    assert moved(requests, face="wrenn", route="/v1/capsules", method="POST", status="201") == 1
    assert moved(requests, face="wrenn", route="unmatched", status="404") == 1
    assert moved(requests, face="fastvm", route="/v1/vms", method="GET", status="200") == 1
    assert moved(requests, face="fastvm", route="/v1/vms/{id}", status="404") == 1
    assert moved(requests, face="hangar", route="/metrics", status="200") == 1
    # Bounded cardinality: no raw id or unknown path ever becomes a label.
    routes = after.label_values(requests, "route")
    assert not any(UNKNOWN_CAPSULE in r or "no-such-thing" in r for r in routes), routes

    latency = "hangar_http_request_duration_seconds"
    assert moved(f"{latency}_count", face="wrenn", route="/v1/capsules/{id}") == 2
    assert moved(f"{latency}_bucket", face="fastvm", route="/v1/vms", le="+Inf") == 1
    assert after.value(f"{latency}_sum", face="wrenn", route="/v1/capsules") > 0

    # The create reached the agent through the fleet's instrumented client.
    agent = "hangar_agent_call_duration_seconds_count"
    assert moved(agent, operation="POST /v1/sandboxes", outcome="ok") >= 1
    assert not any("cl-" in op for op in after.label_values(agent, "operation"))

    # Database-backed gauges, read at scrape time (every state present, zeros included).
    assert after.value("hangar_capsules", state="running") >= 1
    assert (
        after.value("hangar_capsules", state="running")
        == before.value("hangar_capsules", state="running") + 1
    )
    assert {"pending", "running", "stopped", "error"} <= after.label_values(
        "hangar_capsules", "state"
    )
    assert after.value("hangar_hosts", state="online") == 1
    assert after.value("hangar_outbox_lag_seconds") >= 0
    assert after.label_values("process_cpu_seconds_total", "") == set()  # present, unlabelled
    assert any(s.name == "process_cpu_seconds_total" for s in after.samples)

    with live.client() as c:
        gone = c.delete(f"/v1/capsules/{capsule_id}", headers=who.headers)
        assert gone.status_code == 204, gone.text
    assert scrape(live).value("hangar_capsules", state="running") == before.value(
        "hangar_capsules", state="running"
    )


def test_delivery_failures_are_read_from_the_database(served: Served) -> None:
    live = served.live
    with live.client() as c:
        who = Wrenn(c).signup(name="Channels")
    team_id = ids.decode(ids.TEAM, who.team_id)
    with db(live) as s:
        channel = Channel(
            team_id=team_id, name="hook", provider="webhook", events=[], sealed_config="-"
        )
        s.add(channel)
        s.flush()
        channel_id = channel.id
        for i, (status, attempts) in enumerate(
            [(DeliveryStatus.FAILED, 5), (DeliveryStatus.PENDING, 2), (DeliveryStatus.PENDING, 0)]
        ):
            s.add(
                Delivery(
                    channel_id=channel_id,
                    event_id=f"ev-{i}",
                    event_type="capsule.created",
                    event={},
                    status=status,
                    attempts=attempts,
                    # Not due: the live delivery worker leaves these rows alone.
                    next_attempt_at=utcnow() + timedelta(days=1),
                )
            )
    try:
        found = scrape(live)
        name = "hangar_channel_delivery_failures"
        assert found.value(name, provider="webhook", state="failed") == 1
        assert found.value(name, provider="webhook", state="retrying") == 1
    finally:
        with db(live) as s:
            s.delete(s.get(Channel, channel_id))


def test_each_platform_has_its_own_registry() -> None:
    # The global default registry would refuse the second set of series (duplicated names).
    one, two = Metrics(), Metrics()
    one.observe_request("wrenn", "/v1/capsules", "GET", 200, 0.01)
    assert (
        one.registry.get_sample_value(
            "hangar_http_requests_total",
            {"face": "wrenn", "route": "/v1/capsules", "method": "GET", "status": "200"},
        )
        == 1
    )
    assert (
        two.registry.get_sample_value(
            "hangar_http_requests_total",
            {"face": "wrenn", "route": "/v1/capsules", "method": "GET", "status": "200"},
        )
        is None
    )


def test_routine_requests_are_quiet_unless_they_fail() -> None:
    def line(path: str, status: int) -> dict[str, object]:
        return {"event": "request", "path": path, "status": status, "method": "GET"}

    assert routine_request(line("/healthz", 200))
    assert routine_request(line("/metrics", 200))
    assert routine_request(line("/wrenn/v1/hosts/host-abc/heartbeat", 204))
    assert not routine_request(line("/wrenn/v1/hosts/host-abc/heartbeat", 401))
    assert not routine_request(line("/readyz", 503))
    assert not routine_request(line("/wrenn/v1/capsules", 200))


@pytest.mark.parametrize(
    ("fmt", "tty", "is_json"),
    [("auto", False, True), ("auto", True, False), ("json", True, True), ("console", False, False)],
)
def test_log_format(monkeypatch: pytest.MonkeyPatch, fmt: str, tty: bool, is_json: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", fmt)
        structlog.get_logger("hangar.test").info("hello", n=1)
        access = structlog.get_logger("hangar.access")
        access.info("request", method="GET", path="/livez", status=200, duration_ms=0.1)
        access.info("request", method="GET", path="/livez", status=500, duration_ms=0.1)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines  # the successful probe left no line
    if is_json:
        assert json.loads(lines[0])["event"] == "hello"
        assert json.loads(lines[1])["status"] == 500
    else:
        assert "hello" in lines[0]
        with pytest.raises(json.JSONDecodeError):
            json.loads(lines[0])


async def test_a_face_on_its_own_port_is_counted_under_its_name() -> None:
    # As `--face-port` serves it (server/run.py): the face's app wrapped alone.
    face_app = FastAPI()

    @face_app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    metrics = Metrics()
    app = RequestMetrics(face_app, metrics=metrics, face="wrenn")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://face") as c:
        assert (await c.get("/v1/things/abc")).status_code == 200
        assert (await c.request("BREW", "/v1/things/abc")).status_code == 405
        assert (await c.get("/elsewhere")).status_code == 404

    def count(route: str, method: str, status: str) -> float | None:
        labels = {"face": "wrenn", "route": route, "method": method, "status": status}
        return metrics.registry.get_sample_value("hangar_http_requests_total", labels)

    assert count("/v1/things/{thing_id}", "GET", "200") == 1
    # A made-up method is `other`, so clients cannot mint label values.
    assert count("/v1/things/{thing_id}", "other", "405") == 1
    assert count("unmatched", "GET", "404") == 1
