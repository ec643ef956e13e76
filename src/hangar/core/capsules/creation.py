"""Creating capsules, reservation first: part of CapsuleService.

A create records its reservation (the capsule row, `starting` on the chosen host, or
`pending` without one) and commits it before any agent is asked, so concurrent creates can
never pass a team's quota or a host's room together (reservations/ledger.py says why on each
database); a failed start releases it. Every face creates through here.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError
from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.launch import (
    capsule_event,
    new_capsule,
    on_snapshot,
    record_running,
    snapshot_capsule,
    start_sandbox,
    template_ready,
)
from hangar.core.capsules.lifecycle import initial
from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.machine_types import machine_type as lookup_machine_type
from hangar.core.capsules.models import Capsule, CapsuleStatus, Template
from hangar.core.capsules.repository import CapsuleRepository, TemplateRepository
from hangar.core.clock import utcnow
from hangar.core.compute.firewall import DEFAULT_POLICY, FirewallPolicy
from hangar.core.config import CapsuleSettings
from hangar.core.db.uow import checkpoint
from hangar.core.errors import InvalidInput, InvalidState, NotFound, Unavailable
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.quotas.service import QuotaService

DEFAULT_TEMPLATE = "minimal"


class CapsuleCreation:
    """Reserve, place and start capsules (CapsuleService provides the attributes)."""

    session: AsyncSession
    fleet: Fleet
    settings: CapsuleSettings
    capsules: CapsuleRepository
    templates: TemplateRepository
    quotas: QuotaService

    async def create(
        self,
        team_id: str,
        *,
        template: str,
        vcpus: int,
        memory_mb: int,
        timeout_sec: int,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        machine_type: str | None = None,
        queue: bool = False,
    ) -> Capsule:
        """Reserve, place and start a capsule; a failed start releases its reservation.

        Commits (the one create step that must): the reservation before any agent is asked,
        and the outcome after. `machine_type` sets vcpus and memory; `firewall` gives it an
        IPv6 address behind that policy; `disk_gb` defaults to the configured size; with
        `queue`, one no host can start now is kept `pending` for the provisioner.
        """
        if machine_type is not None:
            size = lookup_machine_type(machine_type)
            vcpus, memory_mb = size.vcpus, size.memory_mb
        capsule = new_capsule(
            self.settings,
            team_id,
            template,
            vcpus,
            memory_mb,
            timeout_sec,
            name=name,
            disk_gb=disk_gb,
            firewall=firewall,
            machine_type=machine_type,
        )
        snapshot = await self.templates.get(team_id, template)
        if snapshot is not None:
            if disk_gb is None:  # never smaller than the snapshot's own disk
                capsule.disk_gb = max(capsule.disk_gb or 0, snapshot.disk_gb or 0)
            return await self._start_from(capsule, snapshot, queue=queue)
        handle = await self._reserve(capsule, queue, None)
        if handle is None:
            return capsule
        try:
            if template != DEFAULT_TEMPLATE:  # every host can build the default: skip the call
                async with agent_call():
                    listed = await handle.client.list_templates()
                if template not in {t.name for t in listed if t.type == "base"}:
                    raise InvalidInput(f"unknown template: {template}")
            elif queue and not await template_ready(handle.client, template):
                # Building the default takes minutes: answer now, start it in the background.
                return await self._requeue(capsule)
        except Exception:
            await self._release(capsule)
            raise
        return await self._start(capsule, handle, template, queue=queue)

    async def _start_from(self, capsule: Capsule, snapshot: Template, *, queue: bool) -> Capsule:
        """Start a capsule on a snapshot template; snapshots live on one host."""
        on_snapshot(capsule, snapshot)
        handle = await self._reserve(capsule, queue, snapshot.host_id)
        if handle is None:
            return capsule
        return await self._start(capsule, handle, snapshot.host_template, queue=queue)

    async def _reserve(
        self, capsule: Capsule, queue: bool, host_id: str | None
    ) -> AgentHandle | None:
        """Record the capsule as its own reservation and commit it; the host to start it on.

        The quota check holds the team, and placement the hosts, in the reservation ledger
        until this commit, so creates racing for the last room cannot both pass
        (reservations/ledger.py says why on each database). The row is `starting` on the
        chosen host, as a provisioner's claim is. None: no host can take it now and `queue`,
        so it is kept `pending` without a host; without `queue`, Unavailable and nothing is
        kept (the caller's session ends the transaction and its holds).
        """
        team_id, vcpus, memory_mb = capsule.team_id, capsule.vcpus, capsule.memory_mb
        await self.quotas.check_capsule(team_id, vcpus, memory_mb, capsule.disk_gb)
        try:
            handle = await self.fleet.place(
                self.session, team_id, vcpus, memory_mb, host_id=host_id
            )
        except Unavailable:
            if not queue:
                raise
            await self._queue(capsule)
            return None
        now = utcnow()
        capsule.host_id, capsule.host_ip = handle.host_id, handle.host_ip
        capsule.status, capsule.status_reason = initial(CapsuleStatus.STARTING), "starting"
        capsule.claimed_at = now
        self.session.add(capsule)
        await checkpoint(self.session)
        return handle

    async def _start(
        self, capsule: Capsule, handle: AgentHandle, host_template: str, *, queue: bool
    ) -> Capsule:
        """Start a reserved capsule's sandbox and record it running (committed)."""
        try:
            sandbox = await start_sandbox(handle, capsule, host_template)
        except Exception:  # a refused start, or anything unforeseen: nothing is kept
            await self._release(capsule)
            raise
        if await record_running(self.session, capsule.id, handle, sandbox, created=True):
            await checkpoint(self.session)
            return capsule
        # The reservation no longer stands: destroyed, or sent back to the queue by its host
        # going down, while it started. Commit (ending even a no-op UPDATE's write lock)
        # before the host is asked to undo the start.
        await checkpoint(self.session)
        with contextlib.suppress(AgentError):
            await handle.client.destroy_sandbox(capsule.id)
        await self.session.refresh(capsule)
        if capsule.status == CapsuleStatus.STOPPED:
            raise InvalidState("the capsule was destroyed while it was starting")
        if queue and capsule.status == CapsuleStatus.PENDING:
            # Queued again: the provisioner starts it (elsewhere, or once its host is back).
            capsule_event(self.session, "capsule.created", capsule)
            await checkpoint(self.session)
            return capsule
        await self._release(capsule)
        raise Unavailable("the capsule's host went down while it was starting")

    async def _release(self, capsule: Capsule) -> None:
        """Give up a reservation whose start failed: the row goes, and what it held with it.

        Conditional: a destroy committed meanwhile keeps its record. A provisioner that
        claimed it meanwhile (requeued by a host going down) finds no row and undoes its start.
        """
        await self.session.execute(
            delete(Capsule)
            .where(
                Capsule.id == capsule.id,
                Capsule.status.in_([CapsuleStatus.STARTING, CapsuleStatus.PENDING]),
            )
            .execution_options(synchronize_session=False)
        )
        await checkpoint(self.session)
        if capsule in self.session:
            self.session.expunge(capsule)

    async def _queue(self, capsule: Capsule) -> None:
        # No host until the provisioner picks one, so it reserves no host's room meanwhile;
        # its quota is held from this commit on.
        capsule.host_id = ""
        capsule.status = initial(CapsuleStatus.PENDING)
        capsule.status_reason = "waiting for a host"
        self.session.add(capsule)
        capsule_event(self.session, "capsule.created", capsule)
        await checkpoint(self.session)

    async def _requeue(self, capsule: Capsule) -> Capsule:
        """Hand a reserved capsule to the provisioner (its host is not ready); committed."""
        requeued = await self.capsules.requeue(
            capsule.id, "waiting for a host: its template is being built"
        )
        await self.session.refresh(capsule)
        if requeued:
            capsule_event(self.session, "capsule.created", capsule)
        await checkpoint(self.session)
        return capsule

    async def create_vm(
        self,
        team_id: str,
        *,
        machine_type: str,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        queue: bool = False,
    ) -> Capsule:
        """A machine of a type: default template, base disk, IPv6 behind `firewall` (closed)."""
        return await self.create(
            team_id,
            template=DEFAULT_TEMPLATE,
            vcpus=0,  # both from the machine type
            memory_mb=0,
            timeout_sec=0,  # machines never auto-pause
            name=name,
            disk_gb=BASE_DISK_GB if disk_gb is None else disk_gb,
            firewall=DEFAULT_POLICY if firewall is None else firewall,
            machine_type=machine_type,
            queue=queue,
        )

    async def create_from_snapshot(
        self,
        team_id: str,
        snapshot_id: str,
        *,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        queue: bool = False,
        networked: bool = True,
    ) -> Capsule:
        """Start a capsule from a team's ready snapshot, with its size, disk and firewall.

        `networked` (a VM) gives it an IPv6 address behind the default policy when neither
        `firewall` nor the snapshot (say, of a capsule another face made) has a policy.
        """
        snapshot = await self.templates.get_by_id(team_id, snapshot_id) if snapshot_id else None
        if snapshot is None:
            raise NotFound("snapshot not found")
        if networked and firewall is None and snapshot.firewall is None:
            firewall = DEFAULT_POLICY
        source = await self.capsules.get_any(snapshot.source_capsule_id)
        capsule = snapshot_capsule(self.settings, snapshot, source, name, disk_gb, firewall)
        return await self._start_from(capsule, snapshot, queue=queue)
