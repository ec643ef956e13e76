"""Conformance of every operation of `fastvm-openapi.yaml`, against a live server.

Generated requests (positive and negative, as schemathesis draws them) go to a live server
whose VMs run on a real jail agent, with a real API key. Path ids and body ids are steered to
a real running VM or a real snapshot most of the time, so examples exercise real code and not
only 404s. Every response must: not be a 5xx, use a documented status code, have a documented
content type and match the documented schema.

The console WebSocket operation is checked here as schemathesis sees it (plain HTTP: 426);
test_fastvm_console.py drives the WebSocket itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from fastvm.conftest import Org, cleanup, new_org
from fastvm.helpers import create_vm
from support.live import LiveServer
from support.spec import CHECKS, SPECS_DIR, check_invalid_requests, check_steered, load_spec

FASTVM_SPEC = SPECS_DIR / "fastvm-openapi.yaml"
MAX_EXAMPLES = int(os.environ.get("HANGAR_SCHEMATHESIS_EXAMPLES", "10"))


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    return load_spec(FASTVM_SPEC)


@dataclass
class World:
    """An organization with an API key, a running VM and a snapshot, kept alive."""

    http: httpx.Client
    org: Org
    session: requests.Session = field(default_factory=requests.Session)
    _running: str | None = None
    _snapshot: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.org.headers

    def tidy(self) -> None:
        """Delete VMs and snapshots examples left behind, so quotas never run out."""
        for vm in self.http.get("/v1/vms", headers=self.headers).json():
            if vm["id"] != self._running:
                self.http.delete(f"/v1/vms/{vm['id']}", headers=self.headers)
        snaps = self.http.get("/v1/snapshots", headers=self.headers).json()
        for snap in snaps:
            if snap["id"] != self._snapshot:
                self.http.delete(f"/v1/snapshots/{snap['id']}", headers=self.headers)

    def fresh(self) -> str:
        vm_id: str = create_vm(self.http, self.org)["id"]
        return vm_id

    def running(self) -> str:
        """A running VM, reused across examples (recreated when an example deleted it)."""
        if self._running is not None:
            got = self.http.get(f"/v1/vms/{self._running}", headers=self.headers)
            if got.status_code == 200 and got.json()["status"] == "running":
                return self._running
        self._running = self.fresh()
        return self._running

    def new_snapshot(self) -> str:
        resp = self.http.post(
            "/v1/snapshots",
            json={"vmId": self.running(), "name": f"spec-{uuid.uuid4().hex[:8]}"},
            headers=self.headers,
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["status"] == "ready", resp.text
        snapshot_id: str = resp.json()["id"]
        return snapshot_id

    def snapshot(self) -> str:
        """A ready snapshot, reused across examples."""
        if self._snapshot is not None:
            snaps = self.http.get("/v1/snapshots", headers=self.headers).json()
            if any(s["id"] == self._snapshot for s in snaps):
                return self._snapshot
        self._snapshot = self.new_snapshot()
        return self._snapshot


@pytest.fixture(scope="module")
def world(fastvm_server: LiveServer) -> Iterator[World]:
    with httpx.Client(base_url=f"{fastvm_server.url}/fastvm", timeout=300) as http:
        w = World(http, new_org(fastvm_server, "Spec FastVM"))
        yield w
        cleanup(http, w.org)
        w.session.close()


Prepare = Callable[[World, Any, str], None]


def _nothing(w: World, case: Any, choice: str) -> None:
    return None


def _running_id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.running()


def _fresh_id(w: World, case: Any, choice: str) -> None:
    w.tidy()
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.fresh()


def _create_vm(w: World, case: Any, choice: str) -> None:
    w.tidy()
    if not isinstance(case.body, dict):
        return
    if choice == "a":
        case.body.pop("snapshotId", None)
        case.body["machineType"] = "c1m2"
        case.body.pop("diskGiB", None)
    elif choice == "b" and "snapshotId" in case.body:
        case.body["snapshotId"] = w.snapshot()


def _firewall(w: World, case: Any, choice: str) -> None:
    _running_id(w, case, choice)
    if choice == "a" and isinstance(case.body, dict):
        case.body.update(
            mode="restricted",
            ingress=[{"protocol": "tcp", "portStart": 8000, "sourceCidrs": ["fd00::/8"]}],
        )


def _exec(w: World, case: Any, choice: str) -> None:
    _running_id(w, case, choice)
    if not isinstance(case.body, dict):
        return
    if choice == "a":
        case.body.update(command=["echo", "spec"], timeoutSec=5)
    elif isinstance(case.body.get("timeoutSec"), int) and case.body["timeoutSec"] >= 1:
        case.body["timeoutSec"] = 1 + case.body["timeoutSec"] % 5  # bounded run time


def _create_snapshot(w: World, case: Any, choice: str) -> None:
    w.tidy()
    if isinstance(case.body, dict) and choice != "c":
        case.body["vmId"] = w.running()
        if choice == "a":
            case.body["name"] = f"spec-{uuid.uuid4().hex[:8]}"


def _snapshot_id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.snapshot()


def _delete_snapshot(w: World, case: Any, choice: str) -> None:
    w.tidy()
    if choice == "a":
        case.path_parameters["id"] = w.new_snapshot()


PREPARE: dict[str, Prepare] = {
    "getHealthz": _nothing,
    "getLivez": _nothing,
    "getReadyz": _nothing,
    "listVMs": _nothing,
    "createVM": _create_vm,
    "getVM": _running_id,
    "updateVM": _running_id,
    "deleteVM": _fresh_id,
    "replaceVMFirewall": _firewall,
    "patchVMFirewall": _firewall,
    "createVMConsoleToken": _running_id,
    "execVM": _exec,
    "connectVMConsoleWebsocket": _running_id,
    "createSnapshot": _create_snapshot,
    "listSnapshots": _nothing,
    "updateSnapshot": _snapshot_id,
    "deleteSnapshot": _delete_snapshot,
    "getOrgQuotas": _nothing,
}
FEWER = {"createVM": 6, "deleteVM": 4, "createSnapshot": 4, "deleteSnapshot": 4}


def test_every_operation_is_covered(schema: schemathesis.BaseSchema) -> None:
    ids = {op.ok().definition.raw["operationId"] for op in schema.get_all_operations()}
    assert ids == set(PREPARE)


@pytest.mark.parametrize("operation_id", list(PREPARE))
def test_operation_conforms_to_the_fastvm_spec(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    fewer = min(MAX_EXAMPLES, FEWER.get(operation_id, MAX_EXAMPLES))
    prepare = PREPARE[operation_id]
    check_steered(schema, world, operation_id, prepare, headers=world.headers, max_examples=fewer)


# Operations with something to break (a path parameter or a body): negative mode needs one.
WITH_INPUT = [
    op
    for op in PREPARE
    if op not in ("getHealthz", "getLivez", "getReadyz", "listVMs", "listSnapshots")
    and op != "getOrgQuotas"
]


@pytest.mark.parametrize("operation_id", WITH_INPUT)
def test_invalid_requests_get_documented_errors(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    """Negative mode: requests that break the spec (wrong types, missing fields, bad ids) are
    refused with a documented 4xx in FastVM's error shape, never a 5xx."""
    prepare = PREPARE[operation_id]

    def steer(case: Any, choice: str, data: st.DataObject) -> dict[str, str]:
        prepare(world, case, choice)
        return world.headers

    check_invalid_requests(
        schema,
        operation_id,
        steer,
        base_url=str(world.http.base_url).rstrip("/"),
        session=world.session,
        max_examples=max(MAX_EXAMPLES // 2, 1),
        checks=CHECKS,
        face_prefix="/fastvm/",
    )
