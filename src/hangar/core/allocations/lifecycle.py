"""Transition table of allocations, as gpuaas-notes.md describes their lifecycle."""

from __future__ import annotations

from hangar.core import transitions
from hangar.core.allocations.models import AllocationStatus

A = AllocationStatus

TRANSITIONS: dict[AllocationStatus, frozenset[AllocationStatus]] = {
    # A release may come at any point before the end: the job tears down what exists.
    A.REQUESTED: frozenset({A.PROVISIONING, A.RELEASING}),
    A.PROVISIONING: frozenset({A.ACTIVE, A.FAILED, A.RELEASING}),
    A.ACTIVE: frozenset({A.RELEASING}),
    A.RELEASING: frozenset({A.RELEASED, A.RELEASE_FAILED}),
    # The user's release sends it back to `releasing`; an admin's force-release ends it.
    A.RELEASE_FAILED: frozenset({A.RELEASING, A.RELEASED}),
    A.RELEASED: frozenset(),
    A.FAILED: frozenset(),
}

transitions.complete(AllocationStatus, TRANSITIONS)

# Billed while the capacity is held; not once released, failed or given up on.
BILLED = frozenset({A.ACTIVE, A.RELEASING})


def check_transition(current: str, target: AllocationStatus) -> None:
    """Raise IllegalTransition unless an allocation may go from `current` to `target`."""
    transitions.check("allocation", TRANSITIONS, current, target)
