"""Conformance of every host operation to `wrenn-openapi.yaml`, with schemathesis.

Generated requests go to the live server as a platform admin (bearerAuth) or, for the
heartbeat, as a registered host (X-Host-Token). Ids and tokens are steered to real ones most of
the time: pending and online hosts, a host with a capsule (the 409 of deleteHost), live
registration and refresh tokens, so the examples reach the real code paths.

Spec gaps, allowed narrowly (the answer must be in Wrenn's error shape with that code, and
still passes every other check):
- 404 `not_found` for a host id that names no host (or one the caller may not see) on
  deleteHost, regenerateHostToken and listHostTags, which document no 404; getHost,
  getHostDeletePreview, addHostTag and removeHostTag do document it.
- 400 `invalid_request` on addHostTag for a tag Hangar cannot store (addHostTag documents no
  400; tags are 1-64 characters of letters, digits and `._:=-`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis

from support.hosts import HostApi, add_capsule, make_platform_admin
from support.live import LiveServer
from support.spec import check_steered, load_wrenn_schema
from support.wrenn import Account, Wrenn

MAX_EXAMPLES = int(os.environ.get("HANGAR_SCHEMATHESIS_HOST_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    return load_wrenn_schema()


@dataclass
class World:
    """A platform admin, and a registered host with its host JWT."""

    server: LiveServer
    http: httpx.Client
    admin: Account
    host_id: str = ""
    host_token: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def api(self) -> HostApi:
        return HostApi(self.http)

    def pending(self) -> tuple[str, str]:
        """A fresh pending host: (id, registration token)."""
        made = self.api.created(self.admin)
        return made["host"]["id"], made["registration_token"]

    def online(self) -> str:
        """The world's registered host (made once, re-made if a test deleted it)."""
        if (
            not self.host_id
            or self.http.get(f"/v1/hosts/{self.host_id}", headers=self.admin.headers).status_code
            != 200
        ):
            creds = self.api.registered(self.admin)
            self.host_id = creds["host"]["id"]
            self.host_token = creds["token"]
            self.http.post(
                f"/v1/hosts/{self.host_id}/tags", json={"tag": "spec"}, headers=self.admin.headers
            )
        return self.host_id

    def with_capsule(self) -> str:
        host_id = self.pending()[0]
        add_capsule(self.server, host_id, self.admin.team_id)
        return host_id


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Iterator[World]:
    with httpx.Client(base_url=server.wrenn_url, timeout=60) as http:
        admin = make_platform_admin(server, Wrenn(http).signup(name="Spec Hosts"))
        w = World(server, http, admin)
        w.online()
        yield w
        w.session.close()


Prepare = Callable[[World, Any, str], None]


def _body(case: Any, **values: Any) -> None:
    if isinstance(case.body, dict):
        case.body.update(values)


def _create(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        _body(case, type="byoc", team_id=w.admin.team_id)
    elif choice == "b":
        _body(case, type="regular")


def _online_id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.online()


def _pending_or_online(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        case.path_parameters["id"] = w.pending()[0]
    elif choice == "b":
        case.path_parameters["id"] = w.online()


def _delete(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        case.path_parameters["id"] = w.pending()[0]
    elif choice == "b":
        case.path_parameters["id"] = w.with_capsule()


def _preview(w: World, case: Any, choice: str) -> None:
    if choice == "a":
        case.path_parameters["id"] = w.with_capsule()
    elif choice == "b":
        case.path_parameters["id"] = w.online()


def _register(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        _body(case, token=w.pending()[1])
    if choice == "a":
        _body(case, address="10.9.8.7:7000", cpu_cores=4, memory_mb=8192, disk_gb=50)


def _heartbeat(w: World, case: Any, choice: str) -> None:
    _online_id(w, case, choice)


def _refresh(w: World, case: Any, choice: str) -> None:
    # A newly registered host each time: a steered refresh token is spent by the call.
    if choice in ("a", "b"):
        _body(case, refresh_token=w.api.registered(w.admin)["refresh_token"])


def _tag(w: World, case: Any, choice: str) -> None:
    _online_id(w, case, choice)
    if choice == "a":
        _body(case, tag="gpu")


def _remove_tag(w: World, case: Any, choice: str) -> None:
    _online_id(w, case, choice)
    if choice == "a":
        case.path_parameters["tag"] = "spec"


def _nothing(w: World, case: Any, choice: str) -> None:
    return None


PREPARE: dict[str, Prepare] = {
    "createHost": _create,
    "listHosts": _nothing,
    "getHost": _online_id,
    "deleteHost": _delete,
    "regenerateHostToken": _pending_or_online,
    "registerHost": _register,
    "hostHeartbeat": _heartbeat,
    "refreshHostToken": _refresh,
    "getHostDeletePreview": _preview,
    "listHostTags": _online_id,
    "addHostTag": _tag,
    "removeHostTag": _remove_tag,
}
# operationId -> {status: the only error code allowed with it} where the spec is silent.
GAPS: dict[str, dict[int, str]] = {
    "deleteHost": {404: "not_found"},
    "regenerateHostToken": {404: "not_found"},
    "listHostTags": {404: "not_found"},
    "addHostTag": {400: "invalid_request"},
}


def test_every_host_operation_is_covered(schema: schemathesis.BaseSchema) -> None:
    raw = schema.raw_schema["paths"]
    ops = {
        op["operationId"]
        for path, item in raw.items()
        if path.startswith("/v1/hosts")
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert ops == set(PREPARE)


@pytest.mark.parametrize("operation_id", list(PREPARE))
def test_host_operation_conforms_to_the_wrenn_spec(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    if operation_id == "hostHeartbeat":
        world.online()
        headers = {"X-Host-Token": world.host_token}
    else:
        headers = world.admin.headers

    check_steered(
        schema,
        world,
        operation_id,
        PREPARE[operation_id],
        headers=headers,
        max_examples=MAX_EXAMPLES,
        undocumented_but_required=GAPS.get(operation_id),
    )
