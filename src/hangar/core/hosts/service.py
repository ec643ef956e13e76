"""Hosts: creation, registration, credentials, heartbeats and tags. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.config import HostSettings
from hangar.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from hangar.core.hosts import lifecycle, rules
from hangar.core.hosts.liveness import host_event, mark_down, mark_up, up_status
from hangar.core.hosts.models import Host, HostStatus, HostToken, HostTokenKind, HostType
from hangar.core.hosts.repository import HostRepository
from hangar.core.identity.models import Role
from hangar.core.identity.principal import Principal
from hangar.core.identity.repository import TeamRepository
from hangar.core.security.jwt import TokenSigner
from hangar.core.security.opaque import generate_secret, hash_secret

HOST_AUDIENCE = "hangar:host"
REGISTRATION_PREFIX = "hrt_"
REFRESH_PREFIX = "hrf_"


@dataclass(frozen=True, slots=True)
class Registration:
    """A host and its one-time registration token (the only moment the plaintext exists)."""

    host: Host
    token: str


@dataclass(frozen=True, slots=True)
class HostCredentials:
    """A host JWT and a refresh token, as handed to an agent."""

    host: Host
    token: str
    refresh_token: str


class HostHasCapsules(Conflict):
    """A host still runs capsules and deletion was not forced."""

    code = "host_has_sandboxes"

    def __init__(self, capsule_ids: list[str]) -> None:
        super().__init__(f"host has {len(capsule_ids)} active capsule(s); use force=true")
        self.capsule_ids = capsule_ids


class HostService:
    """What users and host agents can do with hosts."""

    def __init__(
        self,
        session: AsyncSession,
        signer: TokenSigner,
        settings: HostSettings,
        capsules: CapsuleService,
    ) -> None:
        self.session = session
        self.signer = signer
        self.settings = settings
        self.capsules = capsules
        self.hosts = HostRepository(session)
        self.teams = TeamRepository(session)

    # permissions ---------------------------------------------------------------------------

    async def _role(self, principal: Principal, team_id: str | None) -> Role | None:
        """The caller's role in `team_id` when their token acts for that team, else None."""
        if team_id is None or principal.team_id != team_id or principal.user_id is None:
            return None
        if await self.teams.get(team_id) is None:
            return None
        membership = await self.teams.membership(team_id, principal.user_id)
        return membership.role if membership is not None else None

    async def _visible(self, principal: Principal, host_id: str) -> tuple[Host, Role | None]:
        """A host the caller may see and their role in its team; NotFound otherwise."""
        host = await self.hosts.get(host_id)
        if host is None or not rules.visible(principal, host):
            raise NotFound("host not found")
        role = await self._role(principal, host.team_id)
        if not principal.is_platform_admin and role is None:
            raise NotFound("host not found")
        return host, role

    async def _managed(self, principal: Principal, host_id: str) -> Host:
        """A visible host the caller may delete and tag; Forbidden when only visible."""
        host, role = await self._visible(principal, host_id)
        if not rules.may_delete(principal, host, role):
            raise Forbidden("team owner or admin role required", code="insufficient_role")
        return host

    # user operations -----------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        kind: str,
        team_id: str | None,
        provider: str | None,
        availability_zone: str | None,
    ) -> Registration:
        """A pending host and its registration token."""
        host_type = rules.host_type(kind)
        if host_type == HostType.BYOC:
            if team_id is None:
                raise InvalidInput("team_id is required for byoc hosts")
            role = await self._role(principal, team_id)
            if not rules.may_create(principal, host_type, role):
                raise Forbidden("only platform admins or the team's owner may add byoc hosts")
            if await self.teams.get(team_id) is None:
                raise InvalidInput("team_id names no team")
        elif not principal.is_platform_admin:
            raise Forbidden("only platform admins may add regular hosts")
        host = await self.hosts.add(
            Host(
                type=host_type,
                team_id=team_id if host_type == HostType.BYOC else None,
                provider=rules.label("provider", provider),
                availability_zone=rules.label("availability_zone", availability_zone),
                status=lifecycle.initial(HostStatus.PENDING),
                created_by=principal.user_id,
            )
        )
        return Registration(host, await self._registration_token(host))

    async def list_visible(self, principal: Principal) -> Sequence[Host]:
        """Every host for platform admins; the team's BYOC hosts for its members."""
        if principal.is_platform_admin:
            return await self.hosts.list_hosts()
        if await self._role(principal, principal.team_id) is None:
            return []
        return await self.hosts.list_hosts(principal.team_id, byoc_only=True)

    async def get(self, principal: Principal, host_id: str) -> Host:
        """One visible host."""
        return (await self._visible(principal, host_id))[0]

    async def delete_preview(self, principal: Principal, host_id: str) -> tuple[Host, list[str]]:
        """The host and the capsules a forced delete would destroy."""
        host = await self._managed(principal, host_id)
        return host, [c.id for c in await self.hosts.live_capsules(host.id)]

    async def delete(self, principal: Principal, host_id: str, *, force: bool) -> None:
        """Delete a host; its live capsules block it unless `force` destroys them first."""
        host = await self._managed(principal, host_id)
        live = await self.hosts.live_capsules(host.id)
        if live and not force:
            raise HostHasCapsules([c.id for c in live])
        # Every agent call first, then the writes: a flush between two calls would hold the
        # database's write lock (SQLite) while the next host is asked.
        unreachable: set[str] = set()
        for capsule in live:
            try:
                await self.capsules.destroy_sandbox(capsule)
            except Unavailable:
                # The host's agent cannot be reached, so nothing can be stopped there; the
                # host is going away, so its capsules are recorded destroyed all the same.
                unreachable.add(capsule.id)
        for capsule in live:
            if capsule.id in unreachable:
                # Only the reason: the row goes straight to `stopped` (it used to pass
                # through an unflushed `missing`, which no transaction ever saw).
                capsule.status_reason = "its host was deleted"
            await self.capsules.mark_destroyed(capsule)
        await self.hosts.delete(host)

    async def regenerate_token(self, principal: Principal, host_id: str) -> Registration:
        """A new registration token for a pending host; earlier ones stop working."""
        host, role = await self._visible(principal, host_id)
        if not rules.may_create(principal, HostType(host.type), role):
            raise Forbidden("same permissions as creating the host are required")
        if host.status != HostStatus.PENDING:
            raise Conflict(f"host is {host.status}, not pending", code="invalid_state")
        await self.hosts.retire_tokens(host.id, HostTokenKind.REGISTRATION, utcnow())
        return Registration(host, await self._registration_token(host))

    async def tags(self, principal: Principal, host_id: str) -> list[str]:
        """A visible host's tags."""
        host, _ = await self._visible(principal, host_id)
        return await self.hosts.tags(host.id)

    async def add_tag(self, principal: Principal, host_id: str, tag: str) -> None:
        """Tag a host (idempotent)."""
        host = await self._managed(principal, host_id)
        await self.hosts.add_tag(host.id, rules.tag(tag))
        host.updated_at = utcnow()

    async def remove_tag(self, principal: Principal, host_id: str, tag: str) -> None:
        """Untag a host (idempotent)."""
        host = await self._managed(principal, host_id)
        await self.hosts.remove_tag(host.id, tag)

    # agent operations ----------------------------------------------------------------------

    async def register(
        self,
        token: str,
        *,
        address: str,
        arch: str | None,
        cpu_cores: int | None,
        memory_mb: int | None,
        disk_gb: int | None,
    ) -> HostCredentials:
        """Consume a registration token once; the host goes online with the specs it reports."""
        address = rules.address(address)
        arch = rules.label("arch", arch, 32)
        cpu_cores = rules.count("cpu_cores", cpu_cores, rules.MAX_CPU_CORES)
        memory_mb = rules.count("memory_mb", memory_mb, rules.MAX_MEMORY_MB)
        disk_gb = rules.count("disk_gb", disk_gb, rules.MAX_DISK_GB)
        now = utcnow()
        host_id = await self.hosts.consume_token(
            HostTokenKind.REGISTRATION, hash_secret(token), now
        )
        host = await self.hosts.get(host_id or "")
        if host is None:
            raise Unauthenticated("invalid or expired registration token")
        host.address, host.arch = address, arch
        host.cpu_cores, host.memory_mb, host.disk_gb = cpu_cores, memory_mb, disk_gb
        host.status = lifecycle.move(host.status, up_status(host))
        host.last_heartbeat_at = now
        host.updated_at = now
        await self.hosts.retire_tokens(host.id, HostTokenKind.REGISTRATION, now)
        host_event(self.session, "host.up", host)
        return await self._credentials(host)

    async def refresh(self, refresh_token: str) -> HostCredentials:
        """Rotate a refresh token: the presented one is spent at once, reuse is refused."""
        host_id = await self.hosts.consume_token(
            HostTokenKind.REFRESH, hash_secret(refresh_token), utcnow()
        )
        host = await self.hosts.get(host_id or "")
        if host is None:
            raise Unauthenticated("invalid, expired or revoked refresh token")
        return await self._credentials(host)

    async def authenticate(self, token: str) -> Host:
        """The host behind a host JWT; it must still exist."""
        claims = self.signer.verify(token, HOST_AUDIENCE)
        host = await self.hosts.get(str(claims["sub"]))
        if host is None:
            raise Unauthenticated("invalid or expired host token")
        return host

    async def heartbeat(self, token: str, host_id: str) -> Host:
        """Record that a host is alive; it may only speak for itself."""
        host = await self.authenticate(token)
        if host.id != host_id:
            raise Forbidden("host id does not match the host token", code="host_mismatch")
        mark_up(self.session, host)
        await self.session.flush()
        return host

    async def connect(self, token: str) -> Host:
        """A host opening its uplink: a registered, existing host; connecting is proof of life.

        Unauthenticated only for a token that is not a valid host JWT (the agent refreshes it);
        a deleted or pending host is Forbidden (refreshing would not help).
        """
        claims = self.signer.verify(token, HOST_AUDIENCE)
        host = await self.hosts.get(str(claims["sub"]))
        if host is None:
            raise Forbidden("host was deleted", code="host_deleted")
        if host.status == HostStatus.PENDING:
            raise Forbidden("host has not registered", code="host_pending")
        mark_up(self.session, host)
        await self.session.flush()
        return host

    async def agent_stopped(self, host_id: str) -> list[str] | None:
        """The host's agent stopped on purpose: offline now, its capsules missing.

        Returns the capsules marked missing, or None when the host was not up (or is gone).
        """
        host = await self.hosts.get(host_id)
        if host is None:
            return None
        return await mark_down(self.session, host, HostStatus.OFFLINE, "its agent shut down")

    # tokens --------------------------------------------------------------------------------

    async def _issue(self, host: Host, kind: HostTokenKind, prefix: str, ttl_seconds: int) -> str:
        """A new opaque token of `kind`; only its hash is stored."""
        plaintext = generate_secret(prefix, 32)
        await self.hosts.add_token(
            HostToken(
                host_id=host.id,
                kind=kind,
                token_hash=hash_secret(plaintext),
                expires_at=utcnow() + timedelta(seconds=ttl_seconds),
            )
        )
        return plaintext

    async def _registration_token(self, host: Host) -> str:
        return await self._issue(
            host,
            HostTokenKind.REGISTRATION,
            REGISTRATION_PREFIX,
            self.settings.registration_token_ttl_seconds,
        )

    async def _credentials(self, host: Host) -> HostCredentials:
        refresh = await self._issue(
            host, HostTokenKind.REFRESH, REFRESH_PREFIX, self.settings.refresh_token_ttl_seconds
        )
        jwt = self.signer.issue(HOST_AUDIENCE, host.id, self.settings.token_ttl_seconds)
        return HostCredentials(host, jwt, refresh)
