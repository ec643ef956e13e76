"""Invalid Unicode in a request is refused with 400 in the face's shape, never a 500.

A JSON string may spell a lone surrogate (`"\\ud800"`), which no UTF-8 consumer (SQLite,
PostgreSQL, argon2, the agent's JSON) can encode; such a body used to reach the routes and fail
there as a 500, after which the server dropped the connection. The faces now refuse it where the
body is read. Each operation below is sent on one kept-alive connection, followed by an
ordinary request on the same socket. Capsules run on a real jail agent, once per backend.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hangar.web.body import has_lone_surrogate
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess
from support.wrenn import Wrenn

agent = jail_agent.agent  # one jail agent per backend

LONE = "\ud800"


@pytest.fixture(scope="module")
def live(
    backend: str, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with serve_on_agent(backend, tmp_path_factory.mktemp(f"unicode-{backend}"), agent) as s:
        yield s


@pytest.fixture(scope="module")
def world(live: LiveServer) -> Iterator[dict[str, str]]:
    """An API key and a running capsule of its team."""
    with httpx.Client(base_url=live.wrenn_url, timeout=300.0) as client:
        wrenn = Wrenn(client)
        key = wrenn.create_key(wrenn.signup())["key"]
        made = client.post("/v1/capsules", json={"memory_mb": 256}, headers={"X-API-Key": key})
        assert made.status_code == 201, made.text
        yield {"key": key, "capsule": made.json()["id"]}
        client.delete(f"/v1/capsules/{made.json()['id']}", headers={"X-API-Key": key})


def operations(capsule: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The nine operations that answered 500, each with a lone surrogate in its body."""
    base = f"/wrenn/v1/capsules/{capsule}"
    return {
        "login": ("/wrenn/v1/auth/login", {"email": "a@example.com", "password": LONE * 9}),
        "registerHost": ("/wrenn/v1/hosts/register", {"token": LONE, "address": "h:1"}),
        "refreshHostToken": ("/wrenn/v1/hosts/auth/refresh", {"refresh_token": LONE}),
        "createCapsule": ("/wrenn/v1/capsules", {"template": f"min{LONE}"}),
        "execCommand": (f"{base}/exec", {"cmd": "echo", "args": [LONE]}),
        "readFile": (f"{base}/files/read", {"path": f"/tmp/{LONE}"}),
        "listDir": (f"{base}/files/list", {"path": LONE}),
        "makeDir": (f"{base}/files/mkdir", {"path": f"/tmp/{LONE}"}),
        "removeFile": (f"{base}/files/remove", {"path": f"/tmp/{LONE}"}),
    }


OPERATIONS = list(operations("x"))


def send(conn: http.client.HTTPConnection, path: str, body: bytes, key: str) -> tuple[int, Any]:
    headers = {"content-type": "application/json", "x-api-key": key}
    conn.request("POST" if body else "GET", path, body=body or None, headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("spelling", ["escaped", "raw-bytes", "in-a-key"])
def test_a_lone_surrogate_is_400_and_the_connection_stays_usable(
    live: LiveServer, world: dict[str, str], operation: str, spelling: str
) -> None:
    path, fields = operations(world["capsule"])[operation]
    if spelling == "escaped":
        body = json.dumps(fields).encode()  # "\ud800" as a JSON escape
    elif spelling == "raw-bytes":  # the surrogate's UTF-8-style bytes, which json.loads passes
        body = json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:  # only a key holds one; the values are clean
        clean = json.loads(json.dumps(fields).replace("\\ud800", "x"))
        body = json.dumps({**clean, "\udfff": 1}).encode()
    url = urlsplit(live.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        status, error = send(conn, path, body, world["key"])
        assert status == 400, error
        assert set(error) == {"error"}
        assert error["error"]["code"] == "invalid_request"
        socket = conn.sock
        # The same connection serves the next request.
        status, listed = send(conn, "/wrenn/v1/capsules", b"", world["key"])
        assert status == 200, listed
        assert conn.sock is socket, "the server dropped the connection"
    finally:
        conn.close()


def test_a_valid_pair_and_an_escaped_backslash_are_not_refused() -> None:
    assert not has_lone_surrogate(json.dumps({"a": "\U0001f600"}).encode())  # \ud83d\ude00
    assert not has_lone_surrogate(b'{"a": "\\\\ud800"}')  # a backslash, then "ud800"
    assert not has_lone_surrogate(b'{"a": "\xf0\x9f\x98\x80"}')
    assert has_lone_surrogate(b'{"a": ["ok", {"b": "\\udc00"}]}')
    assert has_lone_surrogate(b'{"a": "\\ud83d"}')  # a high half without its low half
    assert has_lone_surrogate('{"a": "\ud800"}'.encode("utf-16", "surrogatepass"))


def test_fastvm_refuses_it_in_its_own_shape(live: LiveServer, world: dict[str, str]) -> None:
    resp = httpx.post(
        f"{live.url}/fastvm/v1/vms",
        content=json.dumps({"machineType": "c1m2", "name": LONE}),  # httpx would not encode it
        headers={"X-API-Key": world["key"], "content-type": "application/json"},
        timeout=60,
    )
    assert resp.status_code == 400, resp.text
    assert isinstance(resp.json()["error"], str)
