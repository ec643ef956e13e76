"""Snapshots in two phases: `begin` records (and reserves) one, `finish` asks its host."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.models import (
    Capsule,
    CapsuleStatus,
    SnapshotStatus,
    Template,
    TemplateKind,
)
from hangar.core.capsules.rules import MAX_NAME, check_name
from hangar.core.capsules.service import CapsuleService
from hangar.core.db.uow import checkpoint
from hangar.core.errors import Conflict, DomainError, InvalidState, NotFound
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import Fleet
from hangar.core.ids import new_id
from hangar.core.snapshots.modes import Mode
from hangar.core.snapshots.repository import SnapshotRepository
from hangar.core.snapshots.templates import BaseTemplates, TemplateView

_LIVE = (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)


@dataclass
class Pending:
    """A snapshot between its phases: recorded as `creating` (or, overwriting, only planned)."""

    template: Template
    mode: Mode
    # The kept snapshot of the same name an overwrite replaces once this one is ready; its
    # slot carries over, so nothing was reserved (or recorded) for this one.
    replaces: Template | None = None


class SnapshotService:
    """Take, list, rename and delete a team's snapshots; list the templates it may start from."""

    def __init__(self, session: AsyncSession, fleet: Fleet, capsules: CapsuleService) -> None:
        self.session = session
        self.fleet = fleet
        self.capsules = capsules
        self.repo = SnapshotRepository(session)
        self.bases = BaseTemplates(session, fleet)
        self.quotas = capsules.quotas

    async def take(
        self,
        team_id: str,
        capsule_id: str,
        name: str | None,
        *,
        mode: Mode,
        overwrite: bool = False,
    ) -> Template:
        """Snapshot a live capsule as `name`: `begin`, its commit point, then `finish`."""
        return await self.finish(await self.begin(team_id, capsule_id, name, mode, overwrite))

    async def begin(
        self,
        team_id: str,
        capsule_id: str,
        name: str | None,
        mode: Mode,
        overwrite: bool = False,
    ) -> Pending:
        """Check the capsule and the name, reserve a snapshot slot and record it `creating`.

        Commits what it recorded before returning: the host is asked only in `finish`.
        """
        checked = mode.check(name) if name is not None else None
        capsule = await self.capsules.get(team_id, capsule_id)
        if capsule.status not in _LIVE:
            raise InvalidState(f"capsule is {capsule.status}, not running")
        existing: Template | None = None
        if checked is None:
            checked = mode.default_name(capsule)
            # A made-up name is never a base template's: no need to ask the hosts.
            if await self.repo.get(team_id, checked) is not None:  # two in one second
                checked = f"{checked}-{secrets.token_hex(2)}"
        else:
            existing = await self.repo.get(team_id, checked)
            if existing is not None and (
                not overwrite or existing.status == SnapshotStatus.CREATING
            ):
                raise Conflict(f"a {mode.noun} named {checked} already exists")
            await self._not_base(team_id, checked)
        template = self._new(team_id, capsule)
        if existing is not None and existing.status != SnapshotStatus.ERROR:
            # Overwriting a kept snapshot takes no new slot: it is replaced once this is ready.
            template.name = checked
            return Pending(template, mode, replaces=existing)
        # A new name takes a slot (a failed one held none). After the hosts were asked about
        # the name: the check holds the team (the database's write lock, on SQLite) until this
        # row is committed, so racing snapshots cannot pass the quota together.
        await self.quotas.check_snapshot(team_id)
        if existing is not None:  # failed: its files went when it failed
            await self.repo.remove(existing)
        try:
            await self.repo.save_named(template, checked)
        except Conflict:
            if name is not None:
                raise
            # Made up in the same second by a concurrent request: a suffix tells them apart.
            await self.repo.save_named(
                template, f"{checked[: MAX_NAME - 5]}-{secrets.token_hex(2)}"
            )
        # The commit point: the snapshot is recorded (and listed, and its name taken) before
        # its host is asked to save anything.
        await checkpoint(self.session)
        return Pending(template, mode)

    @staticmethod
    def _new(team_id: str, capsule: Capsule) -> Template:
        return Template(
            id=new_id(),
            team_id=team_id,
            name="",
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

    async def finish(self, pending: Pending) -> Template:
        """Ask the host to save the source's files: `ready`, or the failure the mode says."""
        template, mode = pending.template, pending.mode
        source = await self.capsules.capsules.get_any(template.source_capsule_id)
        try:
            if source is None or source.status not in _LIVE:
                raise InvalidState("the source capsule is no longer running")
            async with agent_call():
                made = await self.fleet.agent(template.host_id).snapshot(
                    source.id, template.host_template
                )
        except DomainError as exc:
            return await self._failed(pending, exc)
        # Every agent call before any write: a flush would hold the database's write lock
        # (SQLite) while the agent works.
        replaced = pending.replaces
        if replaced is not None:
            async with agent_call():
                await self.fleet.agent(replaced.host_id).delete_template(replaced.host_template)
        if mode.consumes_source:
            await self.capsules.destroy_sandbox(source)
        template.status = SnapshotStatus.READY
        template.size_bytes = made.size_bytes
        if replaced is not None:
            await self.repo.remove(replaced)
            await self.repo.save_named(template, template.name)  # a racing create: 409
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
        if mode.consumes_source:
            await self.capsules.mark_destroyed(source)
        await self.session.flush()
        return template

    async def _failed(self, pending: Pending, exc: DomainError) -> Template:
        """Release what `begin` reserved: keep the snapshot as `error`, or remove it and raise."""
        template = pending.template
        with contextlib.suppress(DomainError):  # partial files, if any were written
            async with agent_call():
                await self.fleet.agent(template.host_id).delete_template(template.host_template)
        if pending.mode.keeps_failures and pending.replaces is None:
            # An `error` snapshot holds no slot (reservations/ledger.py counts the others); an
            # overwrite that failed was never recorded, and the snapshot it meant to replace stays.
            template.status = SnapshotStatus.ERROR
            template.status_reason = exc.message[:500]
            await self.session.flush()
            return template
        if pending.replaces is None:  # recorded and committed by `begin`: the slot is free again
            await self.repo.remove(template)
            await checkpoint(self.session)
        raise exc

    async def list_templates(self, team_id: str, kind: TemplateKind | None) -> list[TemplateView]:
        """Base templates of the fleet and the team's snapshots."""
        views: list[TemplateView] = []
        if kind in (None, TemplateKind.BASE):
            views.extend(await self.bases.views(team_id))
        if kind in (None, TemplateKind.SNAPSHOT):
            views.extend(
                TemplateView.of_snapshot(t) for t in await self.repo.list_for_team(team_id)
            )
        return views

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
            if await self.repo.get(team_id, new_name) is not None:
                raise Conflict(f"a snapshot named {new_name} already exists")
            await self._not_base(team_id, new_name)
            await self.repo.save_named(template, new_name)
        return template

    async def _not_base(self, team_id: str, name: str) -> None:
        """Conflict when a base template the team may use has `name`."""
        if await self.bases.has(team_id, name):
            raise Conflict(f"{name} is a base template")

    async def delete(self, team_id: str, name: str) -> None:
        """Delete a team's snapshot template by name (its files first)."""
        template = await self.repo.get(team_id, name)
        if template is None:
            raise NotFound("template not found")
        await self._delete(template)

    async def delete_snapshot(self, team_id: str, snapshot_id: str) -> None:
        """Delete a snapshot by id (its files first); refused while capsules run on it."""
        await self._delete(await self.get_snapshot(team_id, snapshot_id))

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
        await self.repo.remove(template)
        record(
            self.session,
            "template.snapshot.deleted",
            team_id=template.team_id,
            payload={"name": template.name, "snapshot_id": template.id},
        )
        await self.session.flush()
