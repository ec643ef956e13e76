"""Reaching host agents, and choosing where a capsule runs."""

from __future__ import annotations

from dataclasses import dataclass

from hangar.agentproto.client import AgentClient
from hangar.core.errors import Unavailable


@dataclass
class AgentHandle:
    """One agent and the host it runs on."""

    host_id: str
    client: AgentClient
    host_ip: str = ""


class Fleet:
    """The agents this control plane can talk to."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentHandle] = {}

    def add(self, handle: AgentHandle) -> None:
        """Make an agent reachable."""
        self._agents[handle.host_id] = handle

    def hosts(self) -> list[AgentHandle]:
        """Every reachable agent."""
        return list(self._agents.values())

    def agent(self, host_id: str) -> AgentClient:
        """The client of the agent on `host_id`."""
        handle = self._agents.get(host_id)
        if handle is None:
            raise Unavailable(f"host {host_id} is not connected", code="host_unavailable")
        return handle.client

    def place(self, vcpus: int, memory_mb: int) -> AgentHandle:
        """Pick a host for a new capsule."""
        if not self._agents:
            raise Unavailable("no host is available to run capsules", code="host_unavailable")
        return next(iter(self._agents.values()))

    async def aclose(self) -> None:
        """Close every client."""
        for handle in self._agents.values():
            await handle.client.aclose()
