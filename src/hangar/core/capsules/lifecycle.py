"""Transition table of capsules: every status write goes through `move` or `moving`.

The table is what the code did before it existed, write by write; each row names who makes
the move. A self-loop (missing -> missing, error -> error) is the reconciler writing a new
reason under the same status.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement

from hangar.core import transitions
from hangar.core.capsules.models import Capsule, CapsuleStatus

C = CapsuleStatus

TRANSITIONS: dict[CapsuleStatus, frozenset[CapsuleStatus]] = {
    # Claimed by a provisioner; given up on (its snapshot is gone; its host reports the
    # sandbox stopped); destroyed.
    C.PENDING: frozenset({C.STARTING, C.ERROR, C.STOPPED}),
    # Requeued (host not ready, failed start retried, stale claim, host down); started
    # (running, or paused as its host reports it); out of attempts or reported stopped; destroyed.
    C.STARTING: frozenset({C.PENDING, C.RUNNING, C.PAUSED, C.ERROR, C.STOPPED}),
    # Paused (by a user, auto-pause or its host's report); lost with its host; exited; destroyed.
    C.RUNNING: frozenset({C.PAUSED, C.MISSING, C.ERROR, C.STOPPED}),
    # Resumed (or reported running); lost with its host; exited; destroyed.
    C.PAUSED: frozenset({C.RUNNING, C.MISSING, C.ERROR, C.STOPPED}),
    # Reported again by its host (or still not: a new reason); exited; destroyed.
    C.MISSING: frozenset({C.MISSING, C.RUNNING, C.PAUSED, C.ERROR, C.STOPPED}),
    # Reported alive again by its host; exited (a new reason); destroyed.
    C.ERROR: frozenset({C.ERROR, C.RUNNING, C.PAUSED, C.STOPPED}),
    C.STOPPED: frozenset(),  # destroyed: kept for history and usage, never changed again
}

transitions.complete(CapsuleStatus, TRANSITIONS)

# What a new row starts as: `starting` on the host chosen for it, or `pending` without one.
INITIAL = frozenset({C.PENDING, C.STARTING})


def move(current: str, target: CapsuleStatus) -> CapsuleStatus:
    """`target`, to write over `current`; IllegalTransition if the table forbids it."""
    transitions.check("capsule", TRANSITIONS, current, target)
    return target


def initial(status: CapsuleStatus) -> CapsuleStatus:
    """`status` for a new row; IllegalTransition unless a capsule may start in it."""
    return transitions.initial("capsule", INITIAL, status)


def predecessors(target: CapsuleStatus) -> frozenset[CapsuleStatus]:
    """Every status the table lets a capsule move from to `target`."""
    return transitions.predecessors(TRANSITIONS, target)


def moving(sources: Iterable[CapsuleStatus], target: CapsuleStatus) -> ColumnElement[bool]:
    """The WHERE clause of a conditional UPDATE from one of `sources` to `target`.

    Each source is checked against the table when the statement is built, so a forbidden
    move fails before it is sent rather than writing where its WHERE clause happens to match.
    """
    found = sorted(set(sources))
    for source in found:
        move(source, target)
    if len(found) == 1:  # the same SQL as the hand-written equality it replaces
        return Capsule.status == found[0]
    return Capsule.status.in_(found)
