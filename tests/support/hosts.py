"""Host test helpers: direct database access to a live server, and the host API calls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.events.models import OutboxEvent
from hangar.core.hosts.models import Host, HostToken
from hangar.core.identity.models import User
from hangar.faces.wrenn import ids
from support.live import LiveServer
from support.wrenn import Account


@contextlib.contextmanager
def db(server: LiveServer) -> Iterator[Session]:
    """A synchronous ORM session on the live server's own database, committed on exit."""
    url = make_url(server.settings.resolved_database_url())
    sync_url = url.set(
        drivername="sqlite" if url.drivername.startswith("sqlite") else "postgresql+psycopg"
    )
    engine = create_engine(sync_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def make_platform_admin(server: LiveServer, account: Account) -> Account:
    """Flag an account as platform admin (read from the user row on every request)."""
    with db(server) as s:
        s.execute(
            update(User)
            .where(User.id == ids.decode(ids.USER, account.user_id))
            .values(is_platform_admin=True)
        )
    return account


def add_capsule(server: LiveServer, host_wire_id: str, team_wire_id: str) -> str:
    """A running capsule row on a host, without any agent (its wire id)."""
    capsule = Capsule(
        team_id=ids.decode(ids.TEAM, team_wire_id),
        host_id=ids.decode(ids.HOST, host_wire_id),
        template="minimal",
        vcpus=1,
        memory_mb=256,
        timeout_sec=0,
        status=CapsuleStatus.RUNNING,
        guest_ip="",
        host_ip="",
    )
    with db(server) as s:
        s.add(capsule)
        s.flush()
        return ids.encode(ids.CAPSULE, capsule.id)


def capsule_status(server: LiveServer, capsule_wire_id: str) -> str:
    with db(server) as s:
        status = s.scalar(
            select(Capsule.status).where(Capsule.id == ids.decode(ids.CAPSULE, capsule_wire_id))
        )
        return str(status)


def set_host(server: LiveServer, host_wire_id: str, **values: Any) -> None:
    with db(server) as s:
        s.execute(update(Host).where(Host.id == ids.decode(ids.HOST, host_wire_id)).values(values))


def expire_tokens(server: LiveServer, host_wire_id: str, when: datetime) -> None:
    with db(server) as s:
        s.execute(
            update(HostToken)
            .where(HostToken.host_id == ids.decode(ids.HOST, host_wire_id))
            .values(expires_at=when)
        )


def host_events(server: LiveServer, host_wire_id: str) -> list[tuple[str, str | None]]:
    """(type, team_id) of the outbox events about a host, oldest first."""
    host_id = ids.decode(ids.HOST, host_wire_id)
    with db(server) as s:
        rows = s.execute(
            select(OutboxEvent.type, OutboxEvent.team_id, OutboxEvent.payload)
            .where(OutboxEvent.type.like("host.%"))
            .order_by(OutboxEvent.seq)
        ).all()
    return [(t, team) for t, team, payload in rows if payload.get("host_id") == host_id]


class HostApi:
    """The host calls, returning what the server said."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def create(self, who: Account, **body: Any) -> httpx.Response:
        return self.http.post("/v1/hosts", json={"type": "regular", **body}, headers=who.headers)

    def created(self, who: Account, **body: Any) -> dict[str, Any]:
        resp = self.create(who, **body)
        assert resp.status_code == 201, resp.text
        made: dict[str, Any] = resp.json()
        return made

    def register(self, token: str, address: str = "10.0.0.5:7000") -> httpx.Response:
        body = {"token": token, "address": address, "arch": "x86_64", "cpu_cores": 8}
        return self.http.post(
            "/v1/hosts/register", json={**body, "memory_mb": 16384, "disk_gb": 200}
        )

    def registered(self, who: Account, **body: Any) -> dict[str, Any]:
        """A created and registered host: {host, token, refresh_token}."""
        resp = self.register(self.created(who, **body)["registration_token"])
        assert resp.status_code == 201, resp.text
        creds: dict[str, Any] = resp.json()
        return creds

    def heartbeat(self, host_id: str, token: str) -> httpx.Response:
        return self.http.post(f"/v1/hosts/{host_id}/heartbeat", headers={"X-Host-Token": token})

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.http.post("/v1/hosts/auth/refresh", json={"refresh_token": refresh_token})
