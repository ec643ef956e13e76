"""Snapshot templates: a capsule's filesystem saved under a name its team can start from."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError
from hangar.agentproto.models import Template as HostTemplate
from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.creation import DEFAULT_TEMPLATE
from hangar.core.capsules.models import CapsuleStatus, SnapshotStatus, Template, TemplateKind
from hangar.core.capsules.repository import TemplateRepository
from hangar.core.capsules.rules import MAX_NAME, check_name, check_template_name
from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.db.uow import checkpoint
from hangar.core.errors import Conflict, DomainError, InvalidState, NotFound
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts.models import HostType
from hangar.core.hosts.repository import HostRepository
from hangar.core.ids import new_id

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
        """Save a capsule as a template, then destroy the capsule (as Wrenn does).

        Commits once before asking the host when the name takes a new snapshot slot.
        """
        name = check_template_name(name) if name else f"template-{secrets.token_hex(4)}"
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status not in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
            raise InvalidState(f"capsule is {capsule.status}, not running")
        existing = await self.repo.get(team_id, name)
        if existing is not None and (not overwrite or existing.status == SnapshotStatus.CREATING):
            raise Conflict(f"a template named {name} already exists")
        if name == DEFAULT_TEMPLATE or await self._is_base(team_id, name):
            raise Conflict(f"{name} is a base template")
        agent = self.fleet.agent(capsule.host_id)
        template = Template(
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
        # A new name takes a snapshot slot (a failed one held none): reserved first, as a
        # `creating` row committed before the host is asked, so racing snapshots cannot pass
        # the quota together (the check holds the team until this commit). Overwriting a
        # kept snapshot takes no new slot.
        reserved = existing is None or existing.status == SnapshotStatus.ERROR
        if reserved:
            await self.quotas.check_snapshot(team_id)
            if existing is not None:  # failed: its files went when it failed
                await self.session.delete(existing)
                await self.session.flush()
            await self._save_named(template, name)  # a racing create of the same name: 409
            await checkpoint(self.session)
        try:
            async with agent_call():
                made = await agent.snapshot(capsule.id, template.host_template)
        except DomainError:
            if reserved:  # the slot is free again
                await self.session.delete(template)
                await checkpoint(self.session)
            raise
        # Every agent call before any write: a flush would hold the database's write lock
        # (SQLite) while the agent works.
        if existing is not None and not reserved:
            async with agent_call():
                await self.fleet.agent(existing.host_id).delete_template(existing.host_template)
        await self.capsules.destroy_sandbox(capsule)
        template.status = SnapshotStatus.READY
        template.size_bytes = made.size_bytes
        if existing is not None and not reserved:
            await self.session.delete(existing)
            await self.session.flush()
            await self._save_named(template, name)  # a racing create of the same name: 409
        record(
            self.session,
            "template.snapshot.created",
            team_id=team_id,
            payload={"name": name, "capsule_id": capsule.id, "size_bytes": made.size_bytes},
        )
        await self.capsules.mark_destroyed(capsule)
        return template

    async def _is_base(self, team_id: str, name: str) -> bool:
        return any(t.name == name for t in await self._host_bases(team_id))

    async def _host_bases(self, team_id: str) -> list[HostTemplate]:
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

    async def list_templates(self, team_id: str, kind: TemplateKind | None) -> list[TemplateView]:
        """Base templates of the fleet and the team's snapshots."""
        views: list[TemplateView] = []
        if kind in (None, TemplateKind.BASE):
            views.extend(await self._bases(team_id))
        if kind in (None, TemplateKind.SNAPSHOT):
            views.extend(
                TemplateView.of_snapshot(t) for t in await self.repo.list_for_team(team_id)
            )
        return views

    async def _bases(self, team_id: str) -> list[TemplateView]:
        seen: dict[str, TemplateView] = {}
        for t in await self._host_bases(team_id):
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
        stamped = name is None
        if name is None:
            # A stamped name is never a base template's: no need to ask the hosts.
            stamp = utcnow().strftime("%Y%m%d-%H%M%S")
            name = f"{(capsule.name or capsule.id)[: MAX_NAME - len(stamp) - 6]}-{stamp}"
            if await self.repo.get(team_id, name) is not None:  # two in one second
                name = f"{name}-{secrets.token_hex(2)}"
        else:
            name = await self._free_name(team_id, check_name(name) or "")
        # After the hosts were asked about the name: the check holds the team (the database's
        # write lock, on SQLite) until the caller commits this row (see reservations/ledger.py).
        await self.quotas.check_snapshot(team_id)
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
        try:
            await self._save_named(template, name)
        except Conflict:
            if not stamped:
                raise
            # Stamped in the same second by a concurrent request: a suffix tells them apart.
            await self._save_named(template, f"{name[: MAX_NAME - 5]}-{secrets.token_hex(2)}")
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
            await self._save_named(template, await self._free_name(team_id, new_name))
        return template

    async def delete_snapshot(self, team_id: str, snapshot_id: str) -> None:
        """Delete a snapshot by id (its files first); refused while capsules run on it."""
        await self._delete(await self.get_snapshot(team_id, snapshot_id))

    async def _save_named(self, template: Template, name: str) -> None:
        """Insert or rename `template` as `name`; Conflict when another took the name meanwhile."""
        # `_free_name` checked before; a concurrent create can still win the unique (team, name)
        # index. The savepoint keeps the caller's transaction usable after the refusal.
        try:
            async with self.session.begin_nested():
                template.name = name
                self.session.add(template)
                await self.session.flush()
        except IntegrityError as exc:
            raise Conflict(f"a snapshot named {name} already exists") from exc

    async def _free_name(self, team_id: str, name: str) -> str:
        """`name` if no snapshot or base template of the team's fleet has it, else Conflict."""
        if await self.repo.get(team_id, name) is not None:
            raise Conflict(f"a snapshot named {name} already exists")
        if name == DEFAULT_TEMPLATE or await self._is_base(team_id, name):
            raise Conflict(f"{name} is a base template")
        return name
