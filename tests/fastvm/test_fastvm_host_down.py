"""A VM whose host is not connected: each operation answers a status its spec lists.

The core raises `Unavailable` (503) for a host it cannot reach; only createVM lists 503, so
deleteVM and execVM answer 502 and the console refuses the upgrade with 409. The VM is a
capsule row on a host row with no agent behind it, in a live Hangar of its own.
"""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fastvm.conftest import new_org
from fastvm.helpers import add_host, error_of
from hangar.core.hosts.models import HostStatus, HostType
from hangar.faces.wrenn import ids
from support.hosts import add_capsule
from support.live import LiveServer
from support.ws import ws_url


def test_a_vm_on_a_disconnected_host(bare_server: LiveServer) -> None:
    org = new_org(bare_server)
    host = add_host(bare_server, HostType.REGULAR, HostStatus.ONLINE)
    vm_id = ids.decode(
        ids.CAPSULE, add_capsule(bare_server, ids.encode(ids.HOST, host), org.account.team_id)
    )
    with httpx.Client(base_url=f"{bare_server.url}/fastvm", timeout=60) as fvm:
        assert fvm.get(f"/v1/vms/{vm_id}", headers=org.headers).json()["status"] == "running"

        run = fvm.post(f"/v1/vms/{vm_id}/exec", json={"command": ["true"]}, headers=org.headers)
        assert run.status_code == 502, run.text
        error_of(run)

        token = fvm.post(f"/v1/vms/{vm_id}/console-token", headers=org.headers)
        assert token.status_code == 200, token.text
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(fvm, token.json()["websocketPath"]), open_timeout=30)
        assert refused.value.response.status_code == 409
        assert set(json.loads(refused.value.response.body or b"{}")) == {"error"}

        gone = fvm.delete(f"/v1/vms/{vm_id}", headers=org.headers)
        assert gone.status_code == 502, gone.text
        error_of(gone)
