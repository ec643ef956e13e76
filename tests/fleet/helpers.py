"""Calls and database reads the fleet tests share."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from hangar.core.capsules.models import Capsule
from hangar.core.fleet.static import static_host_id
from hangar.core.hosts.models import Host
from hangar.faces.wrenn import ids
from support.hosts import db, set_host
from support.live import LiveServer
from support.processes import server_cli
from support.wrenn import Account

ONE = static_host_id("one")
TWO = static_host_id("two")
SIZE = {"cpu_cores": 2, "memory_mb": 2048}


def wire_host(core_id: str) -> str:
    return ids.encode(ids.HOST, core_id)


def size_hosts(server: LiveServer, *core_ids: str) -> None:
    """Pin host sizes (2 vCPUs, 2048 MB), whatever this machine reports."""
    for core_id in core_ids:
        set_host(server, wire_host(core_id), **SIZE)


def create(api: httpx.Client, who: Account, vcpus: int = 1, memory_mb: int = 256) -> httpx.Response:
    return api.post(
        "/v1/capsules", json={"vcpus": vcpus, "memory_mb": memory_mb}, headers=who.headers
    )


def created(api: httpx.Client, who: Account, vcpus: int = 1, memory_mb: int = 256) -> str:
    resp = create(api, who, vcpus, memory_mb)
    assert resp.status_code == 201, resp.text
    wire: str = resp.json()["id"]
    return wire


def capsule_row(server: LiveServer, wire_id: str) -> Capsule:
    with db(server) as s:
        row = s.scalar(select(Capsule).where(Capsule.id == ids.decode(ids.CAPSULE, wire_id)))
        assert row is not None
        s.expunge(row)
        return row


def host_of(server: LiveServer, wire_id: str) -> str:
    return capsule_row(server, wire_id).host_id


def host_row(server: LiveServer, core_id: str) -> Host:
    with db(server) as s:
        row = s.get(Host, core_id)
        assert row is not None
        s.expunge(row)
        return row


def destroy_all(api: httpx.Client, *accounts: Account) -> None:
    for who in accounts:
        for c in api.get("/v1/capsules", headers=who.headers).json():
            api.delete(f"/v1/capsules/{c['id']}", headers=who.headers)


def hangar_host(server: LiveServer, *args: str) -> None:
    """`hangar host ARGS` against the server's database, as an operator would run it."""
    done = server_cli(server, "host", *args)
    assert done.returncode == 0, done.stderr
