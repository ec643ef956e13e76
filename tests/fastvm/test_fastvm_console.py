"""The console: a single-use token, then a WebSocket carrying the VM's login shell."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from fastvm.conftest import Org
from fastvm.helpers import create_vm, error_of
from support.live import LiveServer
from support.ws import ws_url


def token_for(fvm: httpx.Client, o: Org, vm_id: str) -> dict[str, object]:
    resp = fvm.post(f"/v1/vms/{vm_id}/console-token", headers=o.headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def output_until(ws: ClientConnection, needle: bytes, timeout: float = 30.0) -> bytes:
    """Collect terminal output (binary frames) until `needle` shows up."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r}; got {seen[-500:]!r}"
        frame = ws.recv(timeout=left)
        assert isinstance(frame, bytes), frame
        seen += frame
    return seen


def drain(ws: ClientConnection) -> None:
    """Read frames until the server closes."""
    while True:
        ws.recv(timeout=30)


def test_console_runs_a_command_and_its_token_is_single_use(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    issued = token_for(fvm, org, vm["id"])
    token = str(issued["token"])
    assert isinstance(issued["expiresInSec"], int)
    assert issued["expiresInSec"] > 0
    assert issued["websocketPath"] == f"/v1/vms/{vm['id']}/console/ws?session={token}"

    with connect(ws_url(fvm, str(issued["websocketPath"])), open_timeout=30) as ws:
        ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        ws.send("echo console-$((6 * 7))\n")  # a text frame: keystrokes
        output_until(ws, b"console-42")
        ws.send(b"stty size\n")  # a binary frame: keystrokes too
        output_until(ws, b"30 100")
        ws.send(b"exit\n")
        with pytest.raises(ConnectionClosedOK):  # closed by the server once the shell exits
            drain(ws)
        assert ws.close_code == 1000
        assert ws.close_reason == "exit 0"

    # The same token again: refused before the upgrade.
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(fvm, str(issued["websocketPath"])), open_timeout=30)
    assert 400 <= refused.value.response.status_code < 500
    assert set(json.loads(refused.value.response.body or b"{}")) == {"error"}


def refusal(fvm: httpx.Client, path: str) -> int:
    """The status a WebSocket upgrade of `path` is refused with (in FastVM's error shape)."""
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(fvm, path), open_timeout=30)
    assert set(json.loads(refused.value.response.body or b"{}")) == {"error"}
    return refused.value.response.status_code


def test_console_refuses_bad_tokens(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    # Unknown, or issued for another VM: a bad token, 400 (an unknown VM is not told apart).
    assert refusal(fvm, f"/v1/vms/{vm['id']}/console/ws?session=nope") == 400
    other = token_for(fvm, org, vm["id"])["token"]
    assert refusal(fvm, f"/v1/vms/{uuid.uuid4()}/console/ws?session={other}") == 400
    # A token of a VM deleted since: 404.
    gone = create_vm(fvm, org)
    token = token_for(fvm, org, gone["id"])["token"]
    assert fvm.delete(f"/v1/vms/{gone['id']}", headers=org.headers).status_code == 200
    assert refusal(fvm, f"/v1/vms/{gone['id']}/console/ws?session={token}") == 404


def test_an_expired_console_token_is_refused(
    fvm: httpx.Client, org: Org, fastvm_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = create_vm(fvm, org)
    # The live server reads its settings on each request: tokens issued now last 1 s.
    monkeypatch.setattr(fastvm_server.settings.capsules, "console_token_ttl_seconds", 1)
    issued = token_for(fvm, org, vm["id"])
    assert issued["expiresInSec"] == 1
    time.sleep(2.5)  # past the token's lifetime; nothing to poll for
    assert refusal(fvm, str(issued["websocketPath"])) == 400
    monkeypatch.undo()
    # A fresh token (60 s again) opens the console.
    with connect(ws_url(fvm, str(token_for(fvm, org, vm["id"])["websocketPath"]))) as ws:
        ws.send("echo fresh-token\n")
        output_until(ws, b"fresh-token")


def test_plain_http_to_the_console_is_426(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    token = token_for(fvm, org, vm["id"])["token"]
    resp = fvm.get(f"/v1/vms/{vm['id']}/console/ws", params={"session": token})
    assert resp.status_code == 426
    assert resp.headers["upgrade"] == "websocket"
    error_of(resp)
    # Any plain GET, whatever its parameters.
    for path in (f"/v1/vms/{vm['id']}/console/ws", "/v1/vms/nope/console/ws?session=x"):
        plain = fvm.get(path)
        assert plain.status_code == 426, (path, plain.text)
        error_of(plain)
    # A plain request does not spend the token.
    with connect(ws_url(fvm, f"/v1/vms/{vm['id']}/console/ws?session={token}")) as ws:
        ws.send("echo still-good\n")
        output_until(ws, b"still-good")


def test_console_token_needs_a_running_vm_of_the_org(fvm: httpx.Client, org: Org) -> None:
    assert fvm.post(f"/v1/vms/{uuid.uuid4()}/console-token", headers=org.headers).status_code == 404
    assert fvm.post("/v1/vms/nope/console-token", headers=org.headers).status_code == 400
    assert fvm.post(f"/v1/vms/{uuid.uuid4()}/console-token").status_code == 401
