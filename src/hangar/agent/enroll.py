"""Joining a control plane: registration, the stored credentials, and their refresh.

`hangar agent --server URL --token TOKEN` spends the one-time registration token once and
keeps what it gets in `<data dir>/credentials.json` (mode 0600): the host id, the host JWT,
the refresh token (which rotates on every use) and the control plane's public keys, pinned
so the agent can tell the real control plane from an impostor on every connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from hangar.agentproto.models import AgentInfo

log = structlog.get_logger("hangar.agent.enroll")

CREDENTIALS_FILE = "credentials.json"
REFRESH_AT = 0.8  # of a host JWT's lifetime


class EnrollError(Exception):
    """The agent cannot join: no usable credentials, or the control plane refused them."""


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (our own token: only its timing and subject are read)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise EnrollError("the control plane sent a malformed host token") from exc
    return data if isinstance(data, dict) else {}


@dataclass
class Credentials:
    """What a registered agent keeps."""

    server: str
    host_id: str  # as the Wrenn API spells it (`host-...`): heartbeat URLs
    subject: str  # the host JWT's `sub`: what the control plane's proofs must name
    token: str
    refresh_token: str
    issuer: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Credentials | None:
        """The stored credentials, if any."""
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, path: Path) -> None:
        """Write atomically, readable by this user only."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh)
        os.chmod(tmp, 0o600)
        tmp.replace(path)


def _server(url: str) -> str:
    return url.rstrip("/")


async def fetch_keys(http: httpx.AsyncClient, creds: Credentials) -> None:
    """Pin the control plane's public keys (right after registering; TLS guards this call)."""
    r = await http.get(f"{creds.server}/agent/v1/keys")
    r.raise_for_status()
    data = r.json()
    creds.issuer = str(data["issuer"])
    creds.keys = [dict(k) for k in data["keys"]]


async def enroll(
    http: httpx.AsyncClient,
    server: str,
    token: str | None,
    path: Path,
    info: AgentInfo,
    address: str,
) -> Credentials:
    """Stored credentials for `server`, else register with the one-time `token`."""
    server = _server(server)
    creds = Credentials.load(path)
    if creds is not None and creds.server != server:
        raise EnrollError(f"{path} belongs to {creds.server}; remove it to join {server} instead")
    if creds is None:
        if not token:
            raise EnrollError("not registered yet: a registration token (--token) is required")
        body = {
            "token": token,
            "address": address,
            "arch": info.arch,
            "cpu_cores": info.cpu_cores,
            "memory_mb": info.memory_mb,
            "disk_gb": info.disk_gb,
        }
        r = await http.post(f"{server}/wrenn/v1/hosts/register", json=body)
        if r.status_code in (400, 401, 403, 404):
            raise EnrollError(f"registration refused ({r.status_code}): {_message(r)}")
        r.raise_for_status()
        data = r.json()
        creds = Credentials(
            server=server,
            host_id=str(data["host"]["id"]),
            subject=str(claims_of(data["token"]).get("sub", "")),
            token=str(data["token"]),
            refresh_token=str(data["refresh_token"]),
        )
        creds.save(path)  # before anything else can fail: the token is spent
        log.info("agent.registered", host_id=creds.host_id)
    if not creds.keys:
        await fetch_keys(http, creds)
        creds.save(path)
    return creds


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text[:200]


class HostAuth:
    """The current host JWT; refreshed before it expires and when refused, once at a time."""

    def __init__(self, http: httpx.AsyncClient, path: Path, creds: Credentials) -> None:
        self.http = http
        self.path = path
        self.creds = creds
        self._lock = asyncio.Lock()

    @property
    def token(self) -> str:
        """The host JWT to present now."""
        return self.creds.token

    def seconds_until_refresh(self) -> float:
        """When the JWT reaches 80% of its lifetime (0: now)."""
        claims = claims_of(self.creds.token)
        issued = float(claims.get("iat") or 0)
        expires = float(claims.get("exp") or 0)
        return max(0.0, issued + REFRESH_AT * (expires - issued) - time.time())

    async def refresh(self, failed: str | None = None) -> None:
        """Rotate the refresh token for a new JWT, unless another caller already did.

        `failed` is the JWT the caller saw refused: if it is no longer current, someone
        refreshed meanwhile, and spending the new refresh token again would be wasted.
        """
        async with self._lock:
            if failed is not None and failed != self.creds.token:
                return
            r = await self.http.post(
                f"{self.creds.server}/wrenn/v1/hosts/auth/refresh",
                json={"refresh_token": self.creds.refresh_token},
            )
            if r.status_code == 401:
                raise EnrollError(
                    "the control plane refused this host's refresh token (revoked, expired or "
                    f"the host was deleted); remove {self.path} and register again"
                )
            r.raise_for_status()
            data = r.json()
            self.creds.token = str(data["token"])
            self.creds.refresh_token = str(data["refresh_token"])
            self.creds.save(self.path)
            log.info("agent.token_refreshed", host_id=self.creds.host_id)
