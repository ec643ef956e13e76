"""Prometheus on the main port: `/metrics`, and the middleware counting every HTTP request.

Labels stay bounded whatever clients send: the route is the matched route's template (never
the raw path), unknown methods are `other`, and a path no route matched is `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.core.metrics import Metrics
from hangar.web.deps import PlatformDep

router = APIRouter(tags=["health"])
MAIN = "hangar"  # the face label of the main port's own routes (probes, events, agents)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@router.get("/metrics", include_in_schema=False)
async def metrics(platform: PlatformDep) -> Response:
    """Every series of this process, the database-backed gauges read now."""
    await platform.metrics.refresh(platform.db)
    return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def face_of(path: str, faces: frozenset[str], face: str = "") -> str:
    """The face a request is for: `face` on its own port, else the path's prefix if a face's."""
    if face:
        return face
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return first if first in faces else MAIN


class RequestMetrics:
    """Count and time HTTP requests by face, route template, method and status.

    On the main port (`faces` given) the face is the prefix the path starts with; on a face's
    own port (`face` given) it is that face.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, faces: Iterable[str] = (), face: str = ""
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.faces = frozenset(faces)
        self.face = face

    def _face_of(self, path: str) -> str:
        return face_of(path, self.faces, self.face)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection (WebSockets and lifespan pass through uncounted)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Mounts rewrite the path on the way in, so the face is read before the call.
        face = self._face_of(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "other"
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # Routing wrote the innermost matched route (a face's, under its mount) into the
            # scope; its template is relative to the face, e.g. `/v1/capsules/{capsule_id}`.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe_request(face, route, method, status, time.perf_counter() - started)
