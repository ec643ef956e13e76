"""What a face is: an ASGI app with its own OpenAPI document, mounted under its prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Depends, FastAPI
from starlette.routing import Mount

from hangar.core.platform import Platform
from hangar.web import idempotency
from hangar.web.body import BodyGuard
from hangar.web.correlation import CorrelationMiddleware
from hangar.web.errors import UnexpectedErrors
from hangar.web.ratelimit import RateLimitHeaders, rate_limit
from hangar.web.uow import UnitOfWorkMiddleware


@dataclass(frozen=True, slots=True)
class Face:
    """One wire-compatible API: served at `/<name>` on the main port, or alone on its own."""

    name: str
    app: FastAPI

    @property
    def prefix(self) -> str:
        """Where the face lives on the main port."""
        return f"/{self.name}"


def new_face_app(platform: Platform, *, title: str, version: str, description: str) -> FastAPI:
    """A FastAPI app set up the way every face needs (state, correlation ids, docs, bounded
    and valid request bodies, rate limits)."""
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # Before every route's own dependencies (authentication among them), so a request
        # over its budget is refused before it costs a database query.
        dependencies=[Depends(rate_limit)],
    )
    app.state.platform = platform
    idempotency.install(app)
    # Innermost: an unexpected exception answers in the face's shape (web/errors.py).
    app.add_middleware(UnexpectedErrors)
    # Outside it, so a route's unexpected failure is an answer here, and rolled back.
    app.add_middleware(UnitOfWorkMiddleware)
    # Inside the face (not on the main port's app), so its errors get the face's shape and
    # the agent relay's bodies on the main port are not bounded by it.
    app.add_middleware(BodyGuard, max_bytes=platform.settings.limits.max_body_bytes)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(CorrelationMiddleware)
    return app


class _FaceMount(Mount):
    """A mount that also takes paths holding a newline (`%0A`), which Starlette's pattern (`.`)
    lets fall through to the main app's bare 404: every path under a face's prefix reaches the
    face, and so gets the face's error shape."""

    def __init__(self, face: Face) -> None:
        super().__init__(face.prefix, app=face.app, name=face.name)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def mount_face(app: FastAPI, face: Face) -> None:
    """Serve `face` under its prefix on `app` (the main port)."""
    app.router.routes.append(_FaceMount(face))
