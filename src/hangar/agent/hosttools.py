"""The host programs a runtime needs, and which of them this host lacks."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from hangar.agentproto.models import MissingProgram, describe_missing

__all__ = ["JAIL_REQUIREMENTS", "Requirement", "describe_missing", "missing", "requirements"]


@dataclass(frozen=True, slots=True)
class Requirement:
    """A program on the agent's PATH, the Debian/Ubuntu package that installs it, and why."""

    program: str
    package: str
    needed_for: str


# Checked at every info call, so installing a package heals the host without a restart.
JAIL_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("bwrap", "bubblewrap", "runs every sandbox"),
    Requirement("nft", "nftables", "firewalls networked sandboxes"),
    Requirement("debootstrap", "debootstrap", "builds base templates"),
    Requirement("setpriv", "util-linux", "drops privileges before bwrap"),
    Requirement("unshare", "util-linux", "makes each sandbox's namespaces"),
    Requirement("nsenter", "util-linux", "enters networked sandboxes' namespaces"),
    Requirement("ip", "iproute2", "wires networked sandboxes"),
)


def requirements(runtime: str) -> tuple[Requirement, ...]:
    """What the named runtime needs on the host; the fake runtime needs nothing."""
    return JAIL_REQUIREMENTS if runtime == "jail" else ()


def missing(required: Iterable[Requirement], path: str | None = None) -> list[MissingProgram]:
    """The required programs not found on `path` (default: this process's PATH)."""
    return [
        MissingProgram(
            program=r.program,
            package=r.package,
            install_hint=f"apt-get install {r.package} ({r.program} {r.needed_for})",
        )
        for r in required
        if shutil.which(r.program, path=path) is None
    ]
