"""OpenTelemetry traces over OTLP/HTTP: a server span per request, a client span per agent call.

Imported only when an endpoint is configured, so a process without one loads no OpenTelemetry
at all. The provider is this process's own (not the global one): nothing else in the process
emits spans, and tests can build several apps side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.core import correlation
from hangar.web.metrics import METHODS, UNMATCHED, face_of

TRACES_PATH = "/v1/traces"
CORRELATION_ATTRIBUTE = "hangar.correlation_id"
_propagator = TraceContextTextMapPropagator()


class Tracing:
    """The span pipeline of one process: provider, batching exporter and tracer."""

    def __init__(self, endpoint: str | None, service_name: str) -> None:
        # Our setting is a base URL like the standard OTEL_EXPORTER_OTLP_ENDPOINT; without
        # it the exporter reads the standard variables itself.
        url = endpoint.rstrip("/") if endpoint else None
        if url is not None and not url.endswith(TRACES_PATH):
            url += TRACES_PATH
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self.tracer = self.provider.get_tracer("hangar")

    def force_flush(self) -> bool:
        """Export every finished span now."""
        return self.provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop the exporter (at process exit)."""
        self.provider.shutdown()

    @contextmanager
    def agent_call(
        self, operation: str, method: str, url: str, headers: dict[str, str]
    ) -> Iterator[Callable[[int], None]]:
        """A client span around one agent call (the agent client's tracer hook)."""
        attributes: dict[str, Any] = {"http.request.method": method, "url.full": url}
        cid = correlation.current()
        if cid:
            attributes[CORRELATION_ATTRIBUTE] = cid
        with self.tracer.start_as_current_span(
            operation, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            _propagator.inject(headers)  # the agent (or a proxy) may continue the trace

            def note_status(status: int) -> None:
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_status(Status(StatusCode.ERROR))

            yield note_status


class TracingMiddleware:
    """One server span per HTTP request: face, route template, status, correlation id.

    Faces are told apart as `RequestMetrics` does: on the main port by the path's prefix
    (`faces`), on a face's own port by `face`.
    """

    def __init__(
        self, app: ASGIApp, *, tracing: Tracing, faces: Iterable[str] = (), face: str = ""
    ) -> None:
        self.app = app
        self.tracer = tracing.tracer
        self.faces = frozenset(faces)
        self.face = face

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (WebSockets and lifespan pass through untraced)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        face = face_of(scope["path"], self.faces, self.face)
        method = scope["method"] if scope["method"] in METHODS else "_OTHER"
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"traceparent", b"tracestate")
        }
        status = 500  # what the client gets when the app raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            method,
            context=_propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "hangar.face": face},
        ) as span:
            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                # The matched route's template, relative to the face (as the metrics label it);
                # never the raw path, which may carry ids or tokens.
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                cid = scope.get("state", {}).get("correlation_id")
                if cid:
                    span.set_attribute(CORRELATION_ATTRIBUTE, cid)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
