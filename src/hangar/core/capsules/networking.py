"""Ingress firewall operations of networked capsules (VMs), part of CapsuleService."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.firewall import (
    DEFAULT_POLICY,
    FirewallPolicy,
    FirewallRule,
    from_json,
    merged,
    to_json,
    to_wire,
    validated,
)
from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.errors import InvalidState
from hangar.core.fleet.gateway import Fleet


class CapsuleNetworking:
    """Replace or change a networked capsule's IPv6 ingress policy, on its host too."""

    session: AsyncSession
    fleet: Fleet

    async def get(self, team_id: str, capsule_id: str) -> Capsule:
        """A live capsule of the team (CapsuleService provides it)."""
        raise NotImplementedError

    async def set_firewall(self, team_id: str, capsule_id: str, policy: FirewallPolicy) -> Capsule:
        """Replace a networked capsule's ingress policy (on its host too, once started)."""
        policy = validated(policy)
        capsule = await self.get(team_id, capsule_id)
        if capsule.firewall is None:
            raise InvalidState("capsule was created without networking")
        if capsule.status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
            async with agent_call():
                await self.fleet.agent(capsule.host_id).set_firewall(capsule.id, to_wire(policy))
        elif capsule.status != CapsuleStatus.PENDING:
            raise InvalidState(f"capsule is {capsule.status}")
        capsule.firewall = to_json(policy)
        await self.session.flush()
        return capsule

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
