"""What a snapshot does to its source and with a failure: each face's contract picks one."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from hangar.core.capsules.models import Capsule
from hangar.core.capsules.rules import MAX_NAME, check_name, check_template_name
from hangar.core.clock import utcnow


@dataclass(frozen=True)
class Mode:
    """The parts of a snapshot that differ between contracts; the two-phase flow does not."""

    # "template" or "snapshot": how a taken name is refused.
    noun: str
    # The name rule, and the name given when none was.
    check: Callable[[str], str]
    default_name: Callable[[Capsule], str]
    # The source capsule is destroyed once its files are saved (else it keeps running).
    consumes_source: bool
    # A failed snapshot stays listed as `error` with why (else it is removed and the error raised).
    keeps_failures: bool


def _display_name(name: str) -> str:
    return check_name(name) or ""


def _template_name(capsule: Capsule) -> str:
    return f"template-{secrets.token_hex(4)}"


def _stamped_name(capsule: Capsule) -> str:
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return f"{(capsule.name or capsule.id)[: MAX_NAME - len(stamp) - 6]}-{stamp}"


# Save a capsule as a named template, then destroy it; a failure is an error, nothing kept.
TEMPLATE = Mode(
    noun="template",
    check=check_template_name,
    default_name=_template_name,
    consumes_source=True,
    keeps_failures=False,
)

# Snapshot a live capsule that keeps running; a failure is kept as an `error` snapshot.
SNAPSHOT = Mode(
    noun="snapshot",
    check=_display_name,
    default_name=_stamped_name,
    consumes_source=False,
    keeps_failures=True,
)
