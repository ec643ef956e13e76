"""The typed messages of the agent's process and PTY streams: same JSON as on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hangar.agentproto.streams import (
    Connect,
    Error,
    Exit,
    Input,
    InvalidMessage,
    Kill,
    Output,
    ProcessStart,
    ProcessStarted,
    PtyStart,
    PtyStarted,
    Resize,
    Stderr,
    Stdin,
    Stdout,
    Stop,
    parse_event,
    parse_process_request,
    parse_pty_request,
)

# Each as the agent and the faces have always written it.
PROCESS_REQUESTS: list[dict[str, Any]] = [
    {"type": "start", "argv": ["sh", "-c", "echo hi"], "env": {"A": "1"}, "cwd": "/tmp"},
    {"type": "start", "argv": ["true"], "env": {}},
    {"type": "stdin", "data": "aGk="},
    {"type": "stop"},
]
PTY_REQUESTS: list[dict[str, Any]] = [
    {
        "type": "start",
        "argv": ["/bin/sh", "-l"],
        "cols": 100,
        "rows": 30,
        "env": {"TERM": "xterm-256color"},
    },
    {"type": "connect", "tag": "pty-0123abcd"},
    {"type": "input", "data": "bHMK"},
    {"type": "resize", "cols": 120, "rows": 40},
    {"type": "kill"},
]
EVENTS: list[dict[str, Any]] = [
    {"type": "start", "pid": 42},
    {"type": "started", "tag": "pty-0123abcd", "pid": 7},
    {"type": "stdout", "data": "bGluZTEK"},
    {"type": "stderr", "data": "ZXJyCg=="},
    {"type": "output", "data": "JCA="},
    {"type": "exit", "exit_code": 7},
    {"type": "error", "code": "sandbox_not_found", "data": "no PTY session", "fatal": True},
    {"type": "error", "data": "replaced", "fatal": True},
]


@pytest.mark.parametrize("wire", PROCESS_REQUESTS)
def test_process_requests_round_trip(wire: dict[str, Any]) -> None:
    assert parse_process_request(wire).dump() == wire


@pytest.mark.parametrize("wire", PTY_REQUESTS)
def test_pty_requests_round_trip(wire: dict[str, Any]) -> None:
    assert parse_pty_request(wire).dump() == wire


@pytest.mark.parametrize("wire", EVENTS)
def test_agent_events_round_trip(wire: dict[str, Any]) -> None:
    message = parse_event(wire)
    assert message.dump() == wire
    assert json.loads(json.dumps(message.dump())) == wire


def test_the_same_type_means_what_its_stream_says() -> None:
    assert isinstance(parse_process_request({"type": "start", "argv": ["ls"]}), ProcessStart)
    assert isinstance(parse_pty_request({"type": "start"}), PtyStart)
    assert isinstance(parse_event({"type": "start", "pid": 1}), ProcessStarted)
    assert isinstance(parse_event({"type": "started", "tag": "t", "pid": 1}), PtyStarted)


def test_built_messages_are_the_wire_json() -> None:
    assert Stop().dump() == {"type": "stop"}
    assert Kill().dump() == {"type": "kill"}
    assert Resize(cols=80, rows=24).dump() == {"type": "resize", "cols": 80, "rows": 24}
    assert Connect(tag="pty-1").dump() == {"type": "connect", "tag": "pty-1"}
    assert Input.of(b"ls\n").dump() == {"type": "input", "data": "bHMK"}
    assert Stdin.of(b"hi").dump() == {"type": "stdin", "data": "aGk="}
    assert Exit(exit_code=0).dump() == {"type": "exit", "exit_code": 0}
    assert Error(data="boom").dump() == {"type": "error", "data": "boom"}
    # A PTY start with nothing said: the agent's own defaults, spelled out.
    assert PtyStart().dump() == {
        "type": "start",
        "argv": ["/bin/bash"],
        "cols": 80,
        "rows": 24,
        "env": {},
    }


def test_data_is_base64_of_the_bytes() -> None:
    raw = bytes(range(256))
    for kind in (Stdout, Stderr, Output, Input, Stdin):
        message = kind.of(raw)
        assert message.raw() == raw
        assert kind.model_validate(message.dump()).raw() == raw


def test_unknown_fields_are_ignored() -> None:
    message = parse_pty_request({"type": "resize", "cols": 1, "rows": 2, "extra": True})
    assert message.dump() == {"type": "resize", "cols": 1, "rows": 2}


@pytest.mark.parametrize(
    ("parse", "wire"),
    [
        (parse_process_request, {"type": "launch", "argv": ["ls"]}),
        (parse_process_request, {"type": "input", "data": ""}),  # a PTY's, not a process's
        (parse_process_request, {"argv": ["ls"]}),
        (parse_process_request, {"type": "start"}),  # no argv
        (parse_process_request, "start"),
        (parse_pty_request, {"type": "stdin", "data": ""}),  # a process's, not a PTY's
        (parse_pty_request, {"type": "resize", "cols": "wide", "rows": 2}),
        (parse_pty_request, {"type": "resize"}),
        (parse_event, {"type": "progress", "percent": 3}),
        (parse_event, {"type": "exit"}),  # no exit code
        (parse_event, {"type": "started", "pid": 1}),  # no tag
        (parse_event, None),
    ],
)
def test_unknown_or_malformed_messages_are_refused(parse: Any, wire: object) -> None:
    with pytest.raises(InvalidMessage):
        parse(wire)
