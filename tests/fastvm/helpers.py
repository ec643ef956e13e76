"""Small clients for FastVM tests: VMs that are running, exec, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx

from fastvm.conftest import Org
from hangar.core.hosts.models import Host
from support.hosts import db
from support.live import LiveServer


def error_of(resp: httpx.Response) -> str:
    """The message of a FastVM error response, checking its shape on the way."""
    body = resp.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str), body
    assert body["error"], body
    message: str = body["error"]
    return message


def wait_running(fvm: httpx.Client, o: Org, vm_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the VM is `running` (it may have been queued: 202 `provisioning`)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = fvm.get(f"/v1/vms/{vm_id}", headers=o.headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["status"] == "running":
            return body
        assert body["status"] == "provisioning", body
        assert time.monotonic() < deadline, f"VM stayed {body['status']}"
        time.sleep(0.5)


def create_vm(fvm: httpx.Client, o: Org, **fields: Any) -> dict[str, Any]:
    """Create a VM (a c1m2 unless told otherwise) and wait until it runs."""
    body = (
        fields
        if ("machineType" in fields or "snapshotId" in fields)
        else {
            "machineType": "c1m2",
            **fields,
        }
    )
    resp = fvm.post("/v1/vms", json=body, headers=o.headers)
    assert resp.status_code in (201, 202), resp.text
    vm: dict[str, Any] = resp.json()
    assert vm["status"] == ("running" if resp.status_code == 201 else "provisioning"), vm
    return wait_running(fvm, o, vm["id"]) if resp.status_code == 202 else vm


def run(fvm: httpx.Client, o: Org, vm_id: str, *command: str, timeout: int = 60) -> dict[str, Any]:
    """Exec through the API and return the ExecVMResponse."""
    resp = fvm.post(
        f"/v1/vms/{vm_id}/exec",
        json={"command": list(command), "timeoutSec": timeout},
        headers=o.headers,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def sh(fvm: httpx.Client, o: Org, vm_id: str, script: str, timeout: int = 60) -> dict[str, Any]:
    """Run a shell script in the VM."""
    return run(fvm, o, vm_id, "/bin/sh", "-c", script, timeout=timeout)


def add_host(server: LiveServer, host_type: str, status: str) -> str:
    """A host row (no agent behind it); its id."""
    with db(server) as s:
        host = Host(type=host_type, team_id=None, status=status, draining=False)
        s.add(host)
        s.flush()
        host_id: str = host.id
    return host_id
