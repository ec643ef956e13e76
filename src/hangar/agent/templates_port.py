"""What the agent needs from a template store (the real one builds Debian root filesystems)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Protocol

from hangar.agentproto.models import Template, TemplateBuild


class Templates(Protocol):
    """Named read-only root filesystems on this host."""

    async def ensure(self, name: str) -> Path:
        """The rootfs of a template, building a base template on first use."""
        ...

    def building(self) -> builtins.list[TemplateBuild]:
        """Base templates being built on this host now."""
        ...

    def allows_nested_userns(self, name: str) -> bool:
        """Whether sandboxes of this template may create user namespaces of their own."""
        ...

    def snapshot_dest(self, name: str) -> Path:
        """Where a new snapshot template's rootfs is to be written."""
        ...

    def register_snapshot(self, name: str) -> None:
        """Record a snapshot written to `snapshot_dest(name)` as a template."""
        ...

    def list(self) -> list[Template]:
        """Every template present."""
        ...

    def delete(self, name: str) -> None:
        """Remove a snapshot template; idempotent."""
        ...
