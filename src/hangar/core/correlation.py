"""One correlation id per request or background job tick: in logs, events and agent calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from hangar.agentproto import correlation as wire


def mint() -> str:
    """A fresh id."""
    return uuid.uuid4().hex


def current() -> str | None:
    """The id of the request or job running now, if any."""
    return wire.current.get()


@contextmanager
def bound(cid: str | None = None) -> Iterator[str]:
    """Run the block under `cid` (a fresh id when None).

    The one variable agent calls read (agentproto/correlation.py) and the log context are
    set together, so a log line, an outbox event and an agent's own logs name the same id.
    Tasks started inside the block copy the context, and so keep the id.
    """
    cid = cid or mint()
    token = wire.current.set(cid)
    try:
        with structlog.contextvars.bound_contextvars(correlation_id=cid):
            yield cid
    finally:
        wire.current.reset(token)
