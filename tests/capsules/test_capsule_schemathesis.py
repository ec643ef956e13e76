"""Conformance of the capsule, file and snapshot operations to `wrenn-openapi.yaml`.

Generated requests go to a live server whose capsules run on a real jail agent, with a real
API key (`X-API-Key`). Path ids are steered to real capsules in the right state most of the
time so the examples exercise real code, not only 404s.

Spec gap, allowed narrowly: many of these operations document no 400 at all (createCapsule
lists only 201 and 502), yet a server must refuse input it cannot honour (vcpus beyond the
host's bounds, a NUL in a path, an unknown template). Such answers must be 400 in Wrenn's
error shape with code `invalid_request`. Likewise an id naming no capsule gets 404
`not_found` where the operation lists no 404 (pauseCapsule, resumeCapsule). Every other
check (schema, content type, no 5xx) still applies to them.

The WebSocket operations (execStream, ptySession) are not HTTP request/response operations;
test_capsules_api.py drives them with real WebSocket clients.
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

from support.live import LiveServer
from support.spec import check_steered, load_wrenn_schema
from support.wrenn import Wrenn

MAX_EXAMPLES = int(os.environ.get("HANGAR_SCHEMATHESIS_CAPSULE_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    return load_wrenn_schema()


@dataclass
class World:
    """An API key and capsules in known states."""

    http: httpx.Client
    key: str
    session: requests.Session = field(default_factory=requests.Session)
    _running: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def create(self) -> str:
        resp = self.http.post("/v1/capsules", json={"memory_mb": 256}, headers=self.headers)
        assert resp.status_code == 201, resp.text
        capsule_id: str = resp.json()["id"]
        return capsule_id

    def running(self) -> str:
        """A running capsule, reused across examples (resumed or recreated when needed)."""
        if self._running is not None:
            got = self.http.get(f"/v1/capsules/{self._running}", headers=self.headers)
            status = got.json().get("status") if got.status_code == 200 else None
            if status == "paused":
                self.http.post(f"/v1/capsules/{self._running}/resume", headers=self.headers)
                status = "running"
            if status == "running":
                return self._running
        self._running = self.create()
        return self._running

    def paused(self) -> str:
        capsule_id = self.running()
        self.http.post(f"/v1/capsules/{capsule_id}/pause", headers=self.headers)
        return capsule_id

    def snapshot(self) -> str:
        name = f"spec-{uuid.uuid4().hex[:8]}"
        resp = self.http.post(
            "/v1/snapshots", json={"sandbox_id": self.create(), "name": name}, headers=self.headers
        )
        assert resp.status_code == 201, resp.text
        return name


@pytest.fixture(scope="module")
def world(capsule_server: LiveServer) -> Iterator[World]:
    with httpx.Client(base_url=capsule_server.wrenn_url, timeout=300) as http:
        owner = Wrenn(http).signup(name="Spec Capsules")
        key = Wrenn(http).create_key(owner, "schemathesis")["key"]
        w = World(http, key)
        yield w
        for capsule in http.get("/v1/capsules", headers=w.headers).json():
            http.delete(f"/v1/capsules/{capsule['id']}", headers=w.headers)
        w.session.close()


Prepare = Callable[[World, Any, str], None]


def _running_id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.running()


def _paused_or_running(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        case.path_parameters["id"] = w.running()
    elif choice == "b":
        case.path_parameters["id"] = w.paused()


def _fresh_id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.create()


def _create(w: World, case: Any, choice: str) -> None:
    if choice == "a" and isinstance(case.body, dict):
        case.body.update(template="minimal", vcpus=1, memory_mb=256)


def _exec(w: World, case: Any, choice: str) -> None:
    _running_id(w, case, choice)
    if choice == "a" and isinstance(case.body, dict):
        case.body.update(cmd="echo", args=["spec"], timeout_sec=10)
    elif isinstance(case.body, dict) and isinstance(case.body.get("timeout_sec"), int):
        case.body["timeout_sec"] = 1 + case.body["timeout_sec"] % 5  # bounded run time


def _snapshot(w: World, case: Any, choice: str) -> None:
    if isinstance(case.body, dict):
        case.body["sandbox_id"] = w.create() if choice != "c" else case.body.get("sandbox_id")
        if choice == "a":
            case.body["name"] = f"spec-{uuid.uuid4().hex[:8]}"


def _delete_snapshot(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        case.path_parameters["name"] = w.snapshot()


def _file_path(w: World, case: Any, choice: str) -> None:
    _running_id(w, case, choice)
    if choice == "a" and isinstance(case.body, dict):
        case.body["path"] = "/etc/hostname"


def _removable(w: World, case: Any, choice: str) -> None:
    _running_id(w, case, choice)
    if choice == "a" and isinstance(case.body, dict):
        w.http.post(
            f"/v1/capsules/{case.path_parameters['id']}/files/mkdir",
            json={"path": "/tmp/doomed"},
            headers=w.headers,
        )
        case.body["path"] = "/tmp/doomed"


def _nothing(w: World, case: Any, choice: str) -> None:
    return None


PREPARE: dict[str, Prepare] = {
    "createCapsule": _create,
    "listCapsules": _nothing,
    "getCapsuleStats": _nothing,
    "getCapsule": _paused_or_running,
    "destroyCapsule": _fresh_id,
    "execCommand": _exec,
    "pingCapsule": _paused_or_running,
    "getCapsuleMetrics": _paused_or_running,
    "pauseCapsule": _paused_or_running,
    "resumeCapsule": _paused_or_running,
    "createSnapshot": _snapshot,
    "listSnapshots": _nothing,
    "deleteSnapshot": _delete_snapshot,
    "uploadFile": _running_id,
    "streamUploadFile": _running_id,
    "downloadFile": _file_path,
    "streamDownloadFile": _file_path,
    "listDir": _file_path,
    "makeDir": _running_id,
    "removePath": _removable,
}
# status -> the only error code allowed with it where the operation does not document it.
UNDOCUMENTED_BUT_REQUIRED = {400: "invalid_request", 404: "not_found"}
FEWER = {"createSnapshot": 4, "deleteSnapshot": 4, "destroyCapsule": 6, "createCapsule": 8}


@pytest.mark.parametrize("operation_id", list(PREPARE))
def test_capsule_operation_conforms_to_the_wrenn_spec(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    check_steered(
        schema,
        world,
        operation_id,
        PREPARE[operation_id],
        headers=world.headers,
        max_examples=min(MAX_EXAMPLES, FEWER.get(operation_id, MAX_EXAMPLES)),
        undocumented_but_required=UNDOCUMENTED_BUT_REQUIRED,
    )
