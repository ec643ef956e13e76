"""Reaching host agents, and choosing where a capsule runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentClient, CallObserver, CallTracer
from hangar.agentproto.models import AgentInfo, MissingProgram, describe_missing
from hangar.core.config import HostSettings
from hangar.core.errors import Unavailable
from hangar.core.fleet.placement import Candidate, Capacity, Request, check_host, choose
from hangar.core.fleet.relay import Relays
from hangar.core.hosts.models import Host
from hangar.core.hosts.repository import HostRepository
from hangar.core.reservations.ledger import Ledger, Reserved
from hangar.core.security.jwt import TokenSigner


@dataclass
class AgentHandle:
    """One agent and the host it runs on."""

    host_id: str
    client: AgentClient
    host_ip: str = ""
    # Configured in settings (not registered): the control plane's polls are its heartbeats,
    # and a failed poll takes it down at once.
    static: bool = False
    # Programs its agent last said the host lacks (its info); placement passes such a host by.
    missing: list[MissingProgram] = field(default_factory=list)

    def note(self, info: AgentInfo) -> None:
        """Remember what the agent last said of its health."""
        self.missing = [] if info.healthy else list(info.missing)


class Fleet:
    """The agents this control plane can talk to."""

    def __init__(self, settings: HostSettings | None = None) -> None:
        self._agents: dict[str, AgentHandle] = {}
        # Agents whose uplinks other replicas hold, reached through them (off until enabled).
        self.relays: Relays | None = None
        # Given every agent client this fleet hands out (the platform's metrics time them).
        self.observer: CallObserver | None = None
        # Also given to every client: wraps each call in a span when tracing is configured.
        self.tracer: CallTracer | None = None
        settings = settings or HostSettings()
        self.capacity = Capacity(
            cpu_overcommit=settings.cpu_overcommit,
            memory_overcommit=settings.memory_overcommit,
            reserve_vcpus=settings.reserve_vcpus,
            reserve_memory_mb=settings.reserve_memory_mb,
        )

    def enable_relays(self, replica_url: str, signer: TokenSigner) -> None:
        """Reach agents connected to other replicas; this one is reached at `replica_url`."""
        self.relays = Relays(replica_url, signer)

    @property
    def replica_url(self) -> str | None:
        """This replica's internal URL, when relaying is enabled."""
        return self.relays.replica_url if self.relays is not None else None

    def uplink_hosts(self) -> set[str]:
        """The hosts whose uplinks end here."""
        return {h.host_id for h in self._agents.values() if h.client.tunnel is not None}

    def add(self, handle: AgentHandle) -> None:
        """Make an agent reachable."""
        handle.client.observer = self.observer
        handle.client.tracer = self.tracer
        self._agents[handle.host_id] = handle

    def remove(self, host_id: str, client: AgentClient | None = None) -> bool:
        """Forget an agent; with `client`, only if that client is still the current one.

        True if it was forgotten (False: unknown, or replaced by a newer connection).
        """
        handle = self._agents.get(host_id)
        if handle is None:
            return False
        if client is not None and handle.client is not client:
            return False
        del self._agents[host_id]
        return True

    def handle(self, host_id: str) -> AgentHandle | None:
        """The connected agent of `host_id`, if this control plane has one."""
        return self._agents.get(host_id)

    def hosts(self) -> list[AgentHandle]:
        """Every reachable agent."""
        return list(self._agents.values())

    def agent(self, host_id: str) -> AgentClient:
        """The client of the agent on `host_id` (relayed when another replica holds it)."""
        handle = self._reachable(host_id)
        if handle is None:
            raise Unavailable(f"host {host_id} is not connected", code="host_unavailable")
        return handle.client

    def _reachable(self, host_id: str) -> AgentHandle | None:
        handle = self._agents.get(host_id)
        if handle is None and self.relays is not None:
            client = self.relays.client(host_id)
            if client is not None:
                client.observer = self.observer
                client.tracer = self.tracer
            handle = AgentHandle(host_id, client) if client is not None else None
        return handle

    async def place(
        self,
        session: AsyncSession,
        team_id: str,
        vcpus: int,
        memory_mb: int,
        *,
        host_id: str | None = None,
    ) -> AgentHandle:
        """The least-loaded host that may run a new capsule of `team_id`, or `host_id`'s.

        Raises `Unavailable` (`host_unavailable` or `no_capacity`). On success the hosts it
        chose among are held in the reservation ledger until the caller's transaction ends:
        the caller records the capsule on the chosen host and commits before asking any
        agent, so no other placement counts the same room (reservations/ledger.py).
        """
        repo = HostRepository(session)
        request = Request(team_id, vcpus, memory_mb, byoc_only=await repo.byoc_only(team_id))
        if host_id is not None:
            host = await repo.get(host_id)
            rows = [host] if host is not None else []
        else:
            rows = list(await repo.placeable(team_id))
        if self.relays is not None:
            for row in rows:
                self.relays.note(row.id, row.uplink_replica)
        ledger = Ledger(session)
        ids = [h.id for h in rows]
        # A first choice without holding anything, so a full fleet refuses (and an idle
        # queue waits) without taking a lock; then the same choice again under the hold,
        # on what is reserved now.
        self._choose(rows, await ledger.hosts(ids), request, host_id)
        await ledger.hold_hosts(ids)
        chosen = self._choose(rows, await ledger.hosts(ids), request, host_id)
        handle = self._reachable(chosen.host_id)
        assert handle is not None  # `connected` said so
        return handle

    def _choose(
        self,
        rows: list[Host],
        used: dict[str, Reserved],
        request: Request,
        host_id: str | None,
    ) -> Candidate:
        candidates = [self._candidate(h, used.get(h.id, Reserved())) for h in rows]
        if host_id is not None:
            return check_host(candidates[0] if candidates else None, request, self.capacity)
        return choose(candidates, request, self.capacity)

    def _candidate(self, host: Host, used: Reserved) -> Candidate:
        handle = self._agents.get(host.id)
        return Candidate(
            host_id=host.id,
            type=host.type,
            team_id=host.team_id,
            status=host.status,
            connected=host.id in self._agents
            or (self.relays is not None and self.relays.owner(host.id) is not None),
            cpu_cores=host.cpu_cores,
            memory_mb=host.memory_mb,
            used_vcpus=used.vcpus,
            used_memory_mb=used.memory_mb,
            missing=describe_missing(handle.missing) if handle and handle.missing else "",
        )

    async def aclose(self) -> None:
        """Close every client."""
        for handle in self._agents.values():
            await handle.client.aclose()
        if self.relays is not None:
            await self.relays.close_retired(everything=True)
