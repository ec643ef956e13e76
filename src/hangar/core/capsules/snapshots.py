"""Snapshot templates: a capsule's filesystem saved under a name its team can start from."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.models import CapsuleStatus, Template, TemplateKind
from hangar.core.capsules.repository import TemplateRepository
from hangar.core.capsules.rules import check_template_name
from hangar.core.capsules.service import DEFAULT_TEMPLATE, CapsuleService
from hangar.core.errors import Conflict, InvalidState, NotFound
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import Fleet
from hangar.core.ids import new_id


@dataclass(frozen=True)
class TemplateView:
    """A template as teams see it, base or snapshot."""

    name: str
    kind: TemplateKind
    vcpus: int | None
    memory_mb: int | None
    size_bytes: int
    created_at: datetime


class SnapshotService:
    """Create, list and delete templates."""

    def __init__(self, session: AsyncSession, fleet: Fleet, capsules: CapsuleService) -> None:
        self.session = session
        self.fleet = fleet
        self.capsules = capsules
        self.repo = TemplateRepository(session)

    async def create(
        self, team_id: str, capsule_id: str, name: str | None, *, overwrite: bool
    ) -> Template:
        """Save a capsule as a template, then destroy the capsule (as Wrenn does)."""
        name = check_template_name(name) if name else f"template-{secrets.token_hex(4)}"
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status not in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
            raise InvalidState(f"capsule is {capsule.status}, not running")
        existing = await self.repo.get(team_id, name)
        if existing is not None and not overwrite:
            raise Conflict(f"a template named {name} already exists")
        if name == DEFAULT_TEMPLATE or await self._is_base(name):
            raise Conflict(f"{name} is a base template")
        agent = self.fleet.agent(capsule.host_id)
        host_template = f"snap-{new_id()}"
        async with agent_call():
            made = await agent.snapshot(capsule.id, host_template)
        if existing is not None:
            async with agent_call():
                await agent.delete_template(existing.host_template)
            await self.session.delete(existing)
            await self.session.flush()
        template = Template(
            team_id=team_id,
            name=name,
            host_template=host_template,
            host_id=capsule.host_id,
            vcpus=capsule.vcpus,
            memory_mb=capsule.memory_mb,
            size_bytes=made.size_bytes,
        )
        self.session.add(template)
        record(
            self.session,
            "template.snapshot.created",
            team_id=team_id,
            payload={"name": name, "capsule_id": capsule.id, "size_bytes": made.size_bytes},
        )
        await self.capsules.destroy_row(capsule)
        await self.session.flush()
        return template

    async def _is_base(self, name: str) -> bool:
        for handle in self.fleet.hosts():
            async with agent_call():
                if any(
                    t.name == name and t.type == "base"
                    for t in await handle.client.list_templates()
                ):
                    return True
        return False

    async def list_templates(self, team_id: str, kind: TemplateKind | None) -> list[TemplateView]:
        """Base templates of the fleet and the team's snapshots."""
        views: list[TemplateView] = []
        if kind in (None, TemplateKind.BASE):
            views.extend(await self._bases())
        if kind in (None, TemplateKind.SNAPSHOT):
            views.extend(
                TemplateView(
                    t.name, TemplateKind.SNAPSHOT, t.vcpus, t.memory_mb, t.size_bytes, t.created_at
                )
                for t in await self.repo.list_for_team(team_id)
            )
        return views

    async def _bases(self) -> list[TemplateView]:
        seen: dict[str, TemplateView] = {}
        for handle in self.fleet.hosts():
            async with agent_call():
                for t in await handle.client.list_templates():
                    if t.type == "base" and t.name not in seen:
                        seen[t.name] = TemplateView(
                            t.name,
                            TemplateKind.BASE,
                            None,
                            None,
                            t.size_bytes,
                            datetime.fromtimestamp(t.created_at, UTC),
                        )
        return sorted(seen.values(), key=lambda v: v.name)

    async def delete(self, team_id: str, name: str) -> None:
        """Delete a team's snapshot template (its files first)."""
        template = await self.repo.get(team_id, name)
        if template is None:
            raise NotFound("template not found")
        users = [
            c.id for c in await self.capsules.capsules.list_live(team_id) if c.template == name
        ]
        if users:
            # Its files are the read-only lower layer of those capsules' filesystems.
            raise Conflict(f"template {name} is in use by {len(users)} capsule(s)")
        async with agent_call():
            await self.fleet.agent(template.host_id).delete_template(template.host_template)
        await self.session.delete(template)
        record(self.session, "template.snapshot.deleted", team_id=team_id, payload={"name": name})
        await self.session.flush()
