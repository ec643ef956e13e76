"""Ingress firewall operations of networked capsules (VMs), part of CapsuleService."""

from __future__ import annotations

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.clock import utcnow
from hangar.core.compute.firewall import (
    DEFAULT_POLICY,
    FirewallPolicy,
    FirewallRule,
    from_json,
    merged,
    to_json,
    to_wire,
    validated,
)
from hangar.core.errors import Conflict, InvalidState
from hangar.core.fleet.gateway import Fleet

# Rounds of set-then-compare before a firewall change gives up on a row that keeps changing.
FIREWALL_TRIES = 5


class CapsuleNetworking:
    """Replace or change a networked capsule's IPv6 ingress policy, on its host too."""

    session: AsyncSession
    fleet: Fleet

    async def get(self, team_id: str, capsule_id: str) -> Capsule:
        """A live capsule of the team (CapsuleService provides it)."""
        raise NotImplementedError

    async def set_firewall(self, team_id: str, capsule_id: str, policy: FirewallPolicy) -> Capsule:
        """Replace a networked capsule's ingress policy (on its host too, once started).

        The stored policy must be the enforced one, without holding a lock across the agent
        call (on SQLite that would stop every writer). So the row is written only by a
        compare-and-set: a pending capsule's while it is still pending (a provisioner's claim
        then waits for our commit and starts with the new policy, or it won and the capsule is
        started: retried on its host); a started capsule's only if `updated_at` is unchanged
        since it was read before the agent call, else the policy is applied again. The last
        writer to commit is thus also the last to have reached the agent. (Only a retry after a
        lost compare-and-set calls the agent again holding what that UPDATE locked: rare.)
        """
        policy = validated(policy)
        stored = to_json(policy)
        capsule = await self.get(team_id, capsule_id)
        for _ in range(FIREWALL_TRIES):
            await self.session.refresh(capsule)
            if capsule.firewall is None:
                raise InvalidState("capsule was created without networking")
            seen = capsule.updated_at
            if capsule.status == CapsuleStatus.PENDING:
                if await self._store_firewall(
                    capsule, stored, Capsule.status == CapsuleStatus.PENDING
                ):
                    return capsule
            elif capsule.status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
                async with agent_call():
                    await self.fleet.agent(capsule.host_id).set_firewall(
                        capsule.id, to_wire(policy)
                    )
                if await self._store_firewall(
                    capsule,
                    stored,
                    Capsule.status.in_((CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)),
                    Capsule.updated_at == seen,
                ):
                    return capsule
            else:
                raise InvalidState(f"capsule is {capsule.status}")
        raise Conflict("the capsule changed while its firewall was set; try again")

    async def _store_firewall(
        self, capsule: Capsule, stored: str, *conditions: ColumnElement[bool]
    ) -> bool:
        """Write the policy if the row still meets `conditions`; whether it did."""
        result = await self.session.execute(
            update(Capsule)
            .where(Capsule.id == capsule.id, *conditions)
            .values(firewall=stored, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        await self.session.refresh(capsule)
        return True

    async def patch_firewall(
        self,
        team_id: str,
        capsule_id: str,
        mode: str | None,
        ingress: tuple[FirewallRule, ...] | None,
    ) -> Capsule:
        """Change only the fields given (None keeps one) of a networked capsule's policy."""
        capsule = await self.get(team_id, capsule_id)
        current = from_json(capsule.firewall) if capsule.firewall else DEFAULT_POLICY
        return await self.set_firewall(team_id, capsule_id, merged(current, mode, ingress))
