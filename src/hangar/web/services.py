"""Core services every face wires the same way, one per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from hangar.core.capsules.service import CapsuleService
from hangar.core.snapshots.service import SnapshotService
from hangar.web.deps import PlatformDep, SessionDep


async def get_capsules(platform: PlatformDep, session: SessionDep) -> CapsuleService:
    """Capsule (VM) service for this request."""
    return CapsuleService(session, platform.fleet, platform.settings.capsules)


CapsulesDep = Annotated[CapsuleService, Depends(get_capsules)]


async def get_snapshots(
    platform: PlatformDep, session: SessionDep, capsules: CapsulesDep
) -> SnapshotService:
    """Snapshot and template service for this request."""
    return SnapshotService(session, platform.fleet, capsules)


SnapshotsDep = Annotated[SnapshotService, Depends(get_snapshots)]
