"""`Idempotency-Key` (and GPUaaS's `X-Idempotency-Key`) on every face's mutations.

The key is claimed once the caller is known (authentication calls `guard`), so keys are
scoped to the principal and a stored answer is only ever replayed to its own principal. The
answer is stored by the request's unit of work in its one commit (`web/uow.py`); a failure
releases the key. Same key, same request: the stored answer, byte for byte, with
`Idempotent-Replayed: true`. Same key, another request: 422. First still running: a repeat
waits for it (`HANGAR_IDEMPOTENCY__WAIT_SECONDS`), then 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Message, Scope

from hangar.core.db.uow import UnitOfWork
from hangar.core.errors import InvalidInput
from hangar.core.idempotency.service import (
    MAX_KEY_LENGTH,
    Claim,
    IdempotencyService,
    StoredResponse,
    request_hash,
    scope_of,
)
from hangar.core.identity.principal import Principal
from hangar.core.platform import Platform

HEADERS = ("idempotency-key", "x-idempotency-key")
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REPLAYED = "Idempotent-Replayed"
_STATE = "idempotency_claim"


class Replay(Exception):
    """The request repeats one already answered: answer as it was answered."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("replayed")
        self.stored = stored


def requested_key(conn: HTTPConnection) -> str | None:
    """The request's idempotency key, if it is a mutation that carries one."""
    if conn.scope["type"] != "http" or conn.scope["method"] not in MUTATIONS:
        return None
    key = next((conn.headers[h] for h in HEADERS if h in conn.headers), None)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


async def _fingerprint(conn: HTTPConnection) -> str:
    body = b""
    if isinstance(conn, Request):
        try:
            body = await conn.body()
        except RuntimeError:  # a multipart body, consumed as a form: its framing stands in
            framing = f"{conn.headers.get('content-type')}:{conn.headers.get('content-length')}"
            body = framing.encode()
    return request_hash(conn.scope["method"], conn.url.path, conn.url.query, body)


def _service(scope: Scope) -> IdempotencyService:
    platform: Platform = scope["app"].state.platform
    return IdempotencyService(platform.db, platform.settings.idempotency)


async def guard(conn: HTTPConnection, principal: Principal) -> None:
    """Claim the request's key for `principal`, or raise Replay with the stored answer."""
    key = requested_key(conn)
    if key is None or _STATE in conn.scope.get("state", {}):
        return
    uow: UnitOfWork | None = conn.scope.get("state", {}).get("uow")
    if uow is None:  # not inside a face: nothing would store the answer
        return
    fingerprint = await _fingerprint(conn)
    outcome = await _service(conn.scope).claim(uow.session, scope_of(principal), key, fingerprint)
    if isinstance(outcome, StoredResponse):
        raise Replay(outcome)
    conn.scope.setdefault("state", {})[_STATE] = outcome


async def complete(scope: Scope, session: AsyncSession, held: list[Message]) -> None:
    """Store the answer of a claimed request in its unit of work (`session`)."""
    claim: Claim | None = scope.get("state", {}).get(_STATE)
    if claim is None:
        return
    start = next(m for m in held if m["type"] == "http.response.start")
    headers: list[tuple[bytes, bytes]] = start.get("headers", [])
    ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None)
    body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    await IdempotencyService.complete(session, claim, StoredResponse(start["status"], ctype, body))


def committed(scope: Scope) -> None:
    """The unit of work committed: a stored answer is now durable and the claim is done."""
    scope.get("state", {}).pop(_STATE, None)


async def release(scope: Scope, session: AsyncSession) -> None:
    """Give back a claim whose request failed or whose answer was not stored."""
    state: dict[str, Any] = scope.get("state", {})
    claim: Claim | None = state.pop(_STATE, None)
    if claim is not None:
        await IdempotencyService.release(session, claim)


def install(app: FastAPI) -> None:
    """Answer a replay with the stored response."""

    def on_replay(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Replay)
        stored = exc.stored
        return Response(
            stored.body,
            status_code=stored.status_code,
            media_type=stored.content_type,
            headers={REPLAYED: "true"},
        )

    app.add_exception_handler(Replay, on_replay)
