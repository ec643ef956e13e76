"""Small clients for capsule tests: exec, files and the two WebSocket protocols."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from support.wrenn import Account
from support.ws import ws_url


def run(
    capi: httpx.Client, who: Account, capsule_id: object, cmd: str, **kw: Any
) -> dict[str, Any]:
    """Exec through the API and return the ExecResponse."""
    resp = capi.post(
        f"/v1/capsules/{capsule_id}/exec", json={"cmd": cmd, **kw}, headers=who.headers
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def open_ws(capi: httpx.Client, who: Account, path: str) -> ClientConnection:
    return connect(ws_url(capi, path), additional_headers=who.headers, open_timeout=30)


def recv(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def pty_output_until(ws: ClientConnection, needle: bytes, timeout: float = 30.0) -> bytes:
    """Collect PTY output until `needle` shows up."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r}; got {seen[-500:]!r}"
        message = recv(ws, left)
        if message["type"] == "output":
            seen += base64.b64decode(message["data"])
        elif message["type"] in ("exit", "error"):
            raise AssertionError(f"PTY ended early: {message}; got {seen[-500:]!r}")
    return seen


def type_keys(ws: ClientConnection, text: str) -> None:
    ws.send(json.dumps({"type": "input", "data": base64.b64encode(text.encode()).decode()}))


def wait_status(
    capi: httpx.Client, who: Account, capsule_id: object, status: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = capi.get(f"/v1/capsules/{capsule_id}", headers=who.headers).json()
        if body.get("status") == status:
            return body
        assert time.monotonic() < deadline, f"status stayed {body.get('status')}, wanted {status}"
        time.sleep(0.25)
