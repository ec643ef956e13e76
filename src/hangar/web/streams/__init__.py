"""Streams shared by every face: a WebSocket pumped to an agent stream, and server-sent events.

A face supplies only how its own clients' frames look (`Frames`); the pumping, the pings,
the teardown and the SSE framing live here once. `forward` is the relay's pump: it passes
agent-protocol messages on without reading them.
"""

from hangar.web.streams.pump import Close, Frames, forward, pump
from hangar.web.streams.sse import EventStreamResponse, sse_message

__all__ = ["Close", "EventStreamResponse", "Frames", "forward", "pump", "sse_message"]
