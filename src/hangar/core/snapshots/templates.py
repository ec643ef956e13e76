"""Templates as teams see them: the fleet's base templates beside the team's snapshots."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError
from hangar.agentproto.models import Template as HostTemplate
from hangar.core.capsules.creation import DEFAULT_TEMPLATE
from hangar.core.capsules.models import Template, TemplateKind
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts.models import HostType
from hangar.core.hosts.repository import HostRepository

# How long one host may take to list its templates before it is left out of the answer.
HOST_LIST_TIMEOUT_SEC = 3.0


@dataclass(frozen=True)
class TemplateView:
    """A template as teams see it, base or snapshot."""

    name: str
    kind: TemplateKind
    vcpus: int | None
    memory_mb: int | None
    size_bytes: int
    created_at: datetime

    @classmethod
    def of_snapshot(cls, t: Template) -> TemplateView:
        """The view of a team's snapshot template."""
        return cls(t.name, TemplateKind.SNAPSHOT, t.vcpus, t.memory_mb, t.size_bytes, t.created_at)


class BaseTemplates:
    """The base templates of the hosts a team may use, asked of those hosts."""

    def __init__(self, session: AsyncSession, fleet: Fleet) -> None:
        self.session = session
        self.fleet = fleet

    async def has(self, team_id: str, name: str) -> bool:
        """Whether `name` is a base template's (the default one, or one of the team's hosts)."""
        return name == DEFAULT_TEMPLATE or any(t.name == name for t in await self._list(team_id))

    async def views(self, team_id: str) -> list[TemplateView]:
        """One view per base template name, sorted by name."""
        seen: dict[str, TemplateView] = {}
        for t in await self._list(team_id):
            if t.name not in seen:
                seen[t.name] = TemplateView(
                    t.name,
                    TemplateKind.BASE,
                    None,
                    None,
                    t.size_bytes,
                    datetime.fromtimestamp(t.created_at, UTC),
                )
        return sorted(seen.values(), key=lambda v: v.name)

    async def _list(self, team_id: str) -> list[HostTemplate]:
        """Base templates of the hosts the team may use: regular ones and its own BYOC ones.

        Asked in parallel with a short timeout; a host that fails or is slow is left out, so
        one unwell host never fails a team's snapshot (nor another team's BYOC host answer).
        """
        usable = {
            h.id
            for h in await HostRepository(self.session).list_hosts()
            if h.type == HostType.REGULAR or (h.type == HostType.BYOC and h.team_id == team_id)
        }
        handles = [h for h in self.fleet.hosts() if h.host_id in usable]
        answers = await asyncio.gather(*(self._list_bases(h) for h in handles))
        return [t for answer in answers for t in answer]

    @staticmethod
    async def _list_bases(handle: AgentHandle) -> list[HostTemplate]:
        try:
            async with asyncio.timeout(HOST_LIST_TIMEOUT_SEC):
                return [t for t in await handle.client.list_templates() if t.type == "base"]
        except (AgentError, TimeoutError):
            return []
