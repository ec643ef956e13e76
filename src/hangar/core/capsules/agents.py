"""Turn agent protocol failures into domain errors, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hangar.agentproto.client import AgentError, AgentUnreachable
from hangar.core.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    NotFound,
    TooLarge,
    Unavailable,
    UpstreamError,
)

BUILD_RETRY = 15  # seconds: a create refused while its template builds is worth retrying then


def translate(exc: AgentError) -> DomainError:
    """The domain error a face should render for an agent's refusal."""
    # A relaying replica reports the agent it cannot reach with the same code.
    if isinstance(exc, AgentUnreachable) or exc.code == "agent_unreachable":
        return Unavailable(f"host agent unreachable: {exc.message}", code="host_unavailable")
    match exc.code:
        case "path_not_found":
            return NotFound(exc.message)
        case "path_error" | "invalid_request" | "template_not_found":
            return InvalidInput(exc.message)
        case "template_building":  # a first build takes about a minute; the message says more
            return Unavailable(exc.message, code="template_building", retry_after=BUILD_RETRY)
        case "host_unhealthy":  # the host lacks programs its runtime needs (named)
            return Unavailable(exc.message, code="host_unhealthy")
        case "invalid_state":
            return InvalidState(exc.message)
        case "too_large":
            return TooLarge(exc.message)
        case "sandbox_not_found":
            return InvalidState("capsule is not on its host any more", code="invalid_state")
        case _:
            return UpstreamError(exc.message, code="agent_error")


@asynccontextmanager
async def agent_call() -> AsyncIterator[None]:
    """Run agent calls, re-raising their failures as domain errors."""
    try:
        yield
    except AgentError as exc:
        raise translate(exc) from exc
