"""The correlation id a caller's agent calls carry, as a context variable of the protocol.

The control plane sets it once per request or background job tick (core/correlation.py);
every call and stream an `AgentClient` makes in that context sends it as `HEADER`, so the
agent's log lines and the control plane's share one id. The protocol stays free of the
control plane: it only defines the variable and the header.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

HEADER = "X-Correlation-Id"
# What a correlation id may look like wherever one is accepted from outside (printable and
# short: it is echoed in headers and written to every log line).
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current: ContextVar[str | None] = ContextVar("hangar_correlation_id", default=None)


def valid(value: str | None) -> str | None:
    """`value` if it is an acceptable correlation id, else None."""
    return value if value is not None and VALID.match(value) else None


def outgoing() -> dict[str, str]:
    """The header to add to an agent call made now (none outside any request or job)."""
    cid = current.get()
    return {HEADER: cid} if cid else {}
