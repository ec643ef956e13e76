"""Messages of agent protocol v1's streams: a process (`/process`) or a terminal (`/pty`).

Each stream carries one JSON object per WebSocket message, told apart by its `type`. Towards
the agent a process stream takes `start`, `stdin` and `stop`; a PTY stream `start` (or
`connect` to a running terminal), `input`, `resize` and `kill`. From the agent come
`start` (a process's pid) or `started` (a terminal's tag), `stdout`/`stderr` or `output`,
`exit` and `error`. Binary data travels base64-encoded in `data`.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class StreamMessage(BaseModel):
    """One message of a stream; unknown fields are ignored, as the agent always did."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def dump(self) -> dict[str, Any]:
        """The wire JSON object: fields left at None are not sent."""
        return self.model_dump(exclude_none=True)


class _Data(StreamMessage):
    """A message carrying bytes, base64-encoded."""

    data: str = ""

    @classmethod
    def of(cls, raw: bytes) -> Self:
        """The message carrying `raw`."""
        return cls(data=base64.b64encode(raw).decode())

    def raw(self) -> bytes:
        """The bytes carried."""
        return base64.b64decode(self.data)


# Towards the agent: a process stream.


class ProcessStart(StreamMessage):
    """The first message of a process stream: what to run."""

    type: Literal["start"] = "start"
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class Stdin(_Data):
    """Bytes for the process's standard input."""

    type: Literal["stdin"] = "stdin"


class Stop(StreamMessage):
    """Kill the process."""

    type: Literal["stop"] = "stop"


# Towards the agent: a PTY stream.


class PtyStart(StreamMessage):
    """The first message of a PTY stream: a new terminal running `argv`."""

    type: Literal["start"] = "start"
    argv: list[str] = Field(default_factory=lambda: ["/bin/bash"])
    cols: int = 80
    rows: int = 24
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class Connect(StreamMessage):
    """The first message of a PTY stream: attach to the running terminal `tag`."""

    type: Literal["connect"] = "connect"
    tag: str = ""


class Input(_Data):
    """Keystrokes for the terminal."""

    type: Literal["input"] = "input"


class Resize(StreamMessage):
    """Resize the terminal."""

    type: Literal["resize"] = "resize"
    cols: int
    rows: int


class Kill(StreamMessage):
    """Kill the terminal's process."""

    type: Literal["kill"] = "kill"


# From the agent, on either stream.


class ProcessStarted(StreamMessage):
    """The process runs."""

    type: Literal["start"] = "start"
    pid: int


class PtyStarted(StreamMessage):
    """The terminal runs (or was attached to); `tag` reconnects to it later."""

    type: Literal["started"] = "started"
    tag: str
    pid: int


class Stdout(_Data):
    """Bytes the process wrote to its standard output."""

    type: Literal["stdout"] = "stdout"


class Stderr(_Data):
    """Bytes the process wrote to its standard error."""

    type: Literal["stderr"] = "stderr"


class Output(_Data):
    """Bytes the terminal printed."""

    type: Literal["output"] = "output"


class Exit(StreamMessage):
    """The process ended; the agent closes the stream after it."""

    type: Literal["exit"] = "exit"
    exit_code: int


class Error(StreamMessage):
    """Something failed; `fatal` ones end the stream. `code` is the agent's stable code."""

    type: Literal["error"] = "error"
    data: str = ""
    code: str | None = None
    fatal: bool | None = None


ProcessRequest = ProcessStart | Stdin | Stop
PtyRequest = PtyStart | Connect | Input | Resize | Kill
AgentEvent = ProcessStarted | PtyStarted | Stdout | Stderr | Output | Exit | Error

_PROCESS: TypeAdapter[ProcessRequest] = TypeAdapter(
    Annotated[ProcessRequest, Field(discriminator="type")]
)
_PTY: TypeAdapter[PtyRequest] = TypeAdapter(Annotated[PtyRequest, Field(discriminator="type")])
_EVENT: TypeAdapter[AgentEvent] = TypeAdapter(Annotated[AgentEvent, Field(discriminator="type")])


class InvalidMessage(ValueError):
    """A stream message of no known type, or not of its type's shape."""


def parse_process_request(raw: object) -> ProcessRequest:
    """A message sent to a process stream; InvalidMessage if it is none."""
    try:
        return _PROCESS.validate_python(raw)
    except ValidationError as exc:
        raise InvalidMessage(str(exc)) from exc


def parse_pty_request(raw: object) -> PtyRequest:
    """A message sent to a PTY stream; InvalidMessage if it is none."""
    try:
        return _PTY.validate_python(raw)
    except ValidationError as exc:
        raise InvalidMessage(str(exc)) from exc


def parse_event(raw: object) -> AgentEvent:
    """A message the agent sent on either stream; InvalidMessage if it is none."""
    try:
        return _EVENT.validate_python(raw)
    except ValidationError as exc:
        raise InvalidMessage(str(exc)) from exc
