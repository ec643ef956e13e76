"""OpenTelemetry traces (issue 13, item 8): with an OTLP endpoint configured, a real control
plane (SQLite, a real agent process on the fake runtime) exports a server span per request and
a client span per agent call to an OTLP/HTTP receiver; with none, it loads no OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from hangar.agentproto.client import AgentClient, AgentUnreachable
from hangar.server.run import face_port_app
from hangar.server.settings import Settings
from hangar.web.tracing import Tracing
from support.live import free_port, serve_on_fake_agent
from support.wrenn import Wrenn

CID = "trace-test-0001"


@dataclass
class Receiver:
    """An OTLP/HTTP collector stand-in: keeps every span posted to `/v1/traces`."""

    url: str
    spans: list[Span] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def attributes(span: Span) -> dict[str, Any]:
    """A span's attributes as plain values."""
    out: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            received.paths.append(self.path)
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for kv in resource_spans.resource.attributes:
                    if kv.key == "service.name":
                        received.services.add(kv.value.string_value)
                for scope_spans in resource_spans.scope_spans:
                    received.spans.extend(scope_spans.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


async def on_a_face_port(main: FastAPI) -> None:
    """A request to a face's own port (`--face-port`) is traced as that face's."""
    face = FastAPI()

    @face.get("/v1/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    app = face_port_app(main, face, "wrenn")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://face") as client:
        assert (await client.get("/v1/items/secret-id")).status_code == 200


async def unreachable_agent(tracing: Tracing) -> None:
    """A call to an agent nobody answers for: the client span records the failure."""
    async with AgentClient(f"http://127.0.0.1:{free_port()}") as client:
        client.tracer = tracing.agent_call
        with pytest.raises(AgentUnreachable):
            await client.info()


def test_requests_and_agent_calls_become_spans(receiver: Receiver, tmp_path: Path) -> None:
    def configure(settings: Settings) -> None:
        settings.otel.endpoint = receiver.url  # a base URL: spans go to /v1/traces

    with serve_on_fake_agent("sqlite", tmp_path, configure) as (live, _, _):
        with live.client() as c:
            who = Wrenn(c).signup(name="Traces")
            made = c.post(
                "/v1/capsules",
                json={"memory_mb": 256},
                headers={**who.headers, "X-Correlation-Id": CID},
            )
            assert made.status_code == 201, made.text
            capsule = made.json()["id"]
            ran = c.post(
                f"/v1/capsules/{capsule}/exec",
                json={"cmd": "true"},
                headers={**who.headers, "X-Correlation-Id": CID},
            )
            assert ran.status_code == 200, ran.text
            assert c.get(f"/v1/capsules/{'cl-' + '0' * 25}", headers=who.headers).status_code == 404
        assert httpx.get(f"{live.url}/healthz", timeout=30).status_code == 200
        assert live.app is not None
        asyncio.run(on_a_face_port(live.app))
        asyncio.run(unreachable_agent(live.app.state.tracing))
        assert live.app.state.tracing.force_flush()

    assert set(receiver.paths) == {"/v1/traces"}
    assert receiver.services == {"hangar"}

    # One server span per request: face, route template (never the raw path), status, id.
    (create,) = receiver.named("POST /v1/capsules")
    assert create.kind == Span.SPAN_KIND_SERVER
    assert attributes(create) == {
        "http.request.method": "POST",
        "hangar.face": "wrenn",
        "http.route": "/v1/capsules",
        "http.response.status_code": 201,
        "hangar.correlation_id": CID,
    }
    (missing,) = receiver.named("GET /v1/capsules/{id}")
    assert attributes(missing)["http.response.status_code"] == 404
    assert not any("cl-000" in s.name or "secret-id" in s.name for s in receiver.spans)
    (health,) = receiver.named("GET /healthz")
    assert attributes(health)["hangar.face"] == "hangar"
    (own_port,) = receiver.named("GET /v1/items/{item}")
    assert attributes(own_port)["hangar.face"] == "wrenn"
    assert attributes(own_port)["http.response.status_code"] == 200

    # Agent calls are client spans, children of the request that made them, with its id.
    (exec_call,) = receiver.named("POST /v1/sandboxes/{id}/exec")
    assert exec_call.kind == Span.SPAN_KIND_CLIENT
    (exec_request,) = receiver.named("POST /v1/capsules/{id}/exec")
    assert exec_call.trace_id == exec_request.trace_id
    assert exec_call.parent_span_id == exec_request.span_id
    call = attributes(exec_call)
    assert call["http.request.method"] == "POST"
    assert call["http.response.status_code"] == 200
    assert call["hangar.correlation_id"] == CID
    assert "/v1/sandboxes/" in call["url.full"]
    assert call["url.full"].endswith("/exec")
    (failed,) = [
        s for s in receiver.named("GET /v1/info") if s.status.code == Status.STATUS_CODE_ERROR
    ]
    assert [e.name for e in failed.events] == ["exception"]
    # The sandbox was started by an agent call too (by the request or the reconciler).
    assert all(s.kind == Span.SPAN_KIND_CLIENT for s in receiver.named("POST /v1/sandboxes"))
    assert receiver.named("POST /v1/sandboxes")


def test_nothing_configured_loads_no_sdk(tmp_path: Path) -> None:
    # A fresh interpreter, so other tests' imports do not count; the standard variables unset.
    script = (
        "import sys\n"
        "from hangar.server.app import build_app\n"
        "from hangar.server.settings import Settings\n"
        f"app = build_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "assert app.state.tracing is None\n"
        "assert app.state.platform.fleet.tracer is None\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.exporter', 'hangar.web.tracing'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HANGAR_"))}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_standard_variable_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANGAR_OTEL__ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not Settings().otel.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().otel.enabled()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("HANGAR_OTEL__ENDPOINT", "http://collector:4318")
    assert Settings().otel.endpoint == "http://collector:4318"
