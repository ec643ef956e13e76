"""Console tokens never reach a log, and a token presented for the wrong VM is spent."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fastvm.conftest import Org, cleanup, new_org
from fastvm.helpers import create_vm
from hangar.web.logging import configure_logging
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess
from support.ws import ws_url

agent = jail_agent.agent  # a real jail agent per backend


@pytest.fixture(scope="module")
def console_server(
    backend: str, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp(f"console-tokens-{backend}")
    with serve_on_agent(backend, data_dir, agent) as live:
        yield live


@pytest.fixture
def fvm(console_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{console_server.url}/fastvm", timeout=300.0) as client:
        yield client


@pytest.fixture
def org(console_server: LiveServer, fvm: httpx.Client) -> Iterator[Org]:
    o = new_org(console_server, "Console Org")
    yield o
    cleanup(fvm, o)


def issue(fvm: httpx.Client, org: Org, vm_id: str) -> tuple[str, str]:
    """A console token for the VM, and the WebSocket path it is to be used at."""
    resp = fvm.post(f"/v1/vms/{vm_id}/console-token", headers=org.headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"]), str(resp.json()["websocketPath"])


def refused(fvm: httpx.Client, path: str) -> int:
    with pytest.raises(InvalidStatus) as denial:
        connect(ws_url(fvm, path), open_timeout=30)
    assert set(json.loads(denial.value.response.body or b"{}")) == {"error"}
    return denial.value.response.status_code


def opens(fvm: httpx.Client, path: str) -> None:
    with connect(ws_url(fvm, path), open_timeout=30) as ws:
        ws.send(b"exit\n")


@pytest.fixture
def server_log(console_server: LiveServer) -> Iterator[io.StringIO]:
    """Everything the server process logs, as its stderr gets it, at level info."""
    configure_logging("info", console_server.settings.log_format)
    root = logging.getLogger()
    out = io.StringIO()
    capture = logging.StreamHandler(out)
    capture.setFormatter(root.handlers[0].formatter)  # the server's own renderer
    root.addHandler(capture)
    try:
        yield out
    finally:
        root.removeHandler(capture)
        configure_logging(console_server.settings.log_level, console_server.settings.log_format)


def test_console_tokens_appear_in_no_log(
    fvm: httpx.Client, org: Org, server_log: io.StringIO
) -> None:
    vm = create_vm(fvm, org)
    token, path = issue(fvm, org, vm["id"])
    assert path.endswith(f"?session={token}")
    opens(fvm, path)
    assert 400 <= refused(fvm, path) < 500  # spent: the refusal is logged too
    assert fvm.get(path).status_code == 426  # a plain GET of the same URL
    logged = server_log.getvalue()
    assert f"/v1/vms/{vm['id']}/console/ws" in logged  # the capture saw the connections
    assert token not in logged


def test_a_token_shown_to_another_vm_is_spent(fvm: httpx.Client, org: Org) -> None:
    mine, other = create_vm(fvm, org), create_vm(fvm, org)
    _token, path = issue(fvm, org, mine["id"])
    wrong = path.replace(mine["id"], other["id"])
    assert wrong != path
    assert refused(fvm, wrong) == 400  # the spec lists 400 for a bad token
    assert refused(fvm, path) == 400  # and it no longer opens its own VM either
    _, fresh = issue(fvm, org, mine["id"])
    opens(fvm, fresh)  # while a fresh one does
