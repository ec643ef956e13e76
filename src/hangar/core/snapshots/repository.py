"""Queries of the snapshots feature."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from hangar.core.capsules.models import Template
from hangar.core.capsules.repository import TemplateRepository
from hangar.core.errors import Conflict


class SnapshotRepository(TemplateRepository):
    """The capsules feature's template reads, and the writes only snapshots make."""

    async def save_named(self, template: Template, name: str) -> None:
        """Insert or rename `template` as `name`; Conflict when another took the name meanwhile."""
        # The service checked the name before; a concurrent create can still win the unique
        # (team, name) index. The savepoint keeps the caller's transaction usable after it.
        try:
            async with self.session.begin_nested():
                template.name = name
                self.session.add(template)
                await self.session.flush()
        except IntegrityError as exc:
            raise Conflict(f"a snapshot named {name} already exists") from exc

    async def remove(self, template: Template) -> None:
        """Delete a template's row (its files on its host are the caller's)."""
        await self.session.delete(template)
        await self.session.flush()
