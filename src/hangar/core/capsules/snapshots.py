"""Snapshot templates: a capsule's filesystem saved under a name its team can start from."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.models import CapsuleStatus, SnapshotStatus, Template, TemplateKind
from hangar.core.capsules.repository import TemplateRepository
from hangar.core.capsules.rules import MAX_NAME, check_name, check_template_name
from hangar.core.capsules.service import DEFAULT_TEMPLATE, CapsuleService
from hangar.core.clock import utcnow
from hangar.core.errors import Conflict, DomainError, InvalidState, NotFound
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

    @classmethod
    def of_snapshot(cls, t: Template) -> TemplateView:
        """The view of a team's snapshot template."""
        return cls(t.name, TemplateKind.SNAPSHOT, t.vcpus, t.memory_mb, t.size_bytes, t.created_at)


class SnapshotService:
    """Create, list and delete templates."""

    def __init__(self, session: AsyncSession, fleet: Fleet, capsules: CapsuleService) -> None:
        self.session = session
        self.fleet = fleet
        self.capsules = capsules
        self.repo = TemplateRepository(session)
        self.quotas = capsules.quotas

    async def create(
        self, team_id: str, capsule_id: str, name: str | None, *, overwrite: bool
    ) -> Template:
        """Save a capsule as a template, then destroy the capsule (as Wrenn does)."""
        name = check_template_name(name) if name else f"template-{secrets.token_hex(4)}"
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status not in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
            raise InvalidState(f"capsule is {capsule.status}, not running")
        existing = await self.repo.get(team_id, name)
        if existing is not None and (not overwrite or existing.status == SnapshotStatus.CREATING):
            raise Conflict(f"a template named {name} already exists")
        if name == DEFAULT_TEMPLATE or await self._is_base(name):
            raise Conflict(f"{name} is a base template")
        if existing is None:
            await self.quotas.check_snapshot(team_id)
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
            source_capsule_id=capsule.id,
            firewall=capsule.firewall,
            disk_gb=capsule.disk_gb,
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
                TemplateView.of_snapshot(t) for t in await self.repo.list_for_team(team_id)
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
        """Delete a team's snapshot template by name (its files first)."""
        template = await self.repo.get(team_id, name)
        if template is None:
            raise NotFound("template not found")
        await self._delete(template)

    async def _delete(self, template: Template) -> None:
        if template.status == SnapshotStatus.CREATING:
            raise InvalidState("the snapshot is still being created")
        users = await self.capsules.capsules.snapshot_users(
            template.team_id, template.id, template.name
        )
        if users:
            # Its files are the read-only lower layer of those capsules' filesystems.
            raise Conflict(f"template {template.name} is in use by {len(users)} capsule(s)")
        async with agent_call():
            await self.fleet.agent(template.host_id).delete_template(template.host_template)
        await self.session.delete(template)
        record(
            self.session,
            "template.snapshot.deleted",
            team_id=template.team_id,
            payload={"name": template.name, "snapshot_id": template.id},
        )
        await self.session.flush()

    # snapshots by id, kept beside their source capsule ---------------------------------------

    async def begin_snapshot(
        self, team_id: str, capsule_id: str, name: str | None = None
    ) -> Template:
        """Record a `creating` snapshot of a live capsule; commit, then `finish_snapshot`."""
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status not in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
            raise InvalidState(f"capsule is {capsule.status}, not running")
        await self.quotas.check_snapshot(team_id)
        if name is None:
            stamp = utcnow().strftime("%Y%m%d-%H%M%S")
            name = f"{(capsule.name or capsule.id)[: MAX_NAME - len(stamp) - 6]}-{stamp}"
            if await self.repo.get(team_id, name) is not None:  # two in one second
                name = f"{name}-{secrets.token_hex(2)}"
        name = await self._free_name(team_id, check_name(name) or "")
        template = Template(
            id=new_id(),
            team_id=team_id,
            name=name,
            host_template=f"snap-{new_id()}",
            host_id=capsule.host_id,
            vcpus=capsule.vcpus,
            memory_mb=capsule.memory_mb,
            size_bytes=0,
            status=SnapshotStatus.CREATING,
            source_capsule_id=capsule.id,
            firewall=capsule.firewall,
            disk_gb=capsule.disk_gb,
        )
        self.session.add(template)
        await self.session.flush()
        return template

    async def finish_snapshot(self, template: Template) -> Template:
        """Save the source capsule's files (it keeps running): `ready`, or `error` with why."""
        source = await self.capsules.capsules.get_any(template.source_capsule_id)
        try:
            if source is None or source.status not in (
                CapsuleStatus.RUNNING,
                CapsuleStatus.PAUSED,
            ):
                raise InvalidState("the source capsule is no longer running")
            async with agent_call():
                made = await self.fleet.agent(template.host_id).snapshot(
                    source.id, template.host_template
                )
        except DomainError as exc:
            template.status = SnapshotStatus.ERROR
            template.status_reason = exc.message[:500]
            with contextlib.suppress(DomainError):  # partial files, if any were written
                async with agent_call():
                    await self.fleet.agent(template.host_id).delete_template(template.host_template)
        else:
            template.status = SnapshotStatus.READY
            template.size_bytes = made.size_bytes
            record(
                self.session,
                "template.snapshot.created",
                team_id=template.team_id,
                payload={
                    "name": template.name,
                    "snapshot_id": template.id,
                    "capsule_id": source.id,
                    "size_bytes": made.size_bytes,
                },
            )
        await self.session.flush()
        return template

    async def get_snapshot(self, team_id: str, snapshot_id: str) -> Template:
        """A team's snapshot by id, else NotFound."""
        template = await self.repo.get_by_id(team_id, snapshot_id) if snapshot_id else None
        if template is None:
            raise NotFound("snapshot not found")
        return template

    async def list_snapshots(self, team_id: str) -> list[Template]:
        """A team's snapshots, newest first."""
        return list(await self.repo.list_for_team(team_id))

    async def rename_snapshot(self, team_id: str, snapshot_id: str, name: str) -> Template:
        """Give a snapshot a new name, unique in its team."""
        template = await self.get_snapshot(team_id, snapshot_id)
        new_name = check_name(name) or ""
        if new_name != template.name:
            template.name = await self._free_name(team_id, new_name)
            await self.session.flush()
        return template

    async def delete_snapshot(self, team_id: str, snapshot_id: str) -> None:
        """Delete a snapshot by id (its files first); refused while capsules run on it."""
        await self._delete(await self.get_snapshot(team_id, snapshot_id))

    async def _free_name(self, team_id: str, name: str) -> str:
        """`name` if no snapshot or base template of the team's fleet has it, else Conflict."""
        if await self.repo.get(team_id, name) is not None:
            raise Conflict(f"a snapshot named {name} already exists")
        if name == DEFAULT_TEMPLATE or await self._is_base(name):
            raise Conflict(f"{name} is a base template")
        return name
