"""Transition tables of terminal sessions and their guests."""

from __future__ import annotations

from hangar.core import transitions
from hangar.core.terminals.models import GuestState, SessionStatus

S, G = SessionStatus, GuestState

TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.ENDED}),
    S.RUNNING: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
    S.FAILED: frozenset(),
}

GUEST_TRANSITIONS: dict[GuestState, frozenset[GuestState]] = {
    G.REQUESTED: frozenset({G.APPROVED, G.DENIED, G.REMOVED}),
    G.APPROVED: frozenset({G.REMOVED}),
    G.DENIED: frozenset(),
    G.REMOVED: frozenset(),
}

transitions.complete(SessionStatus, TRANSITIONS)
transitions.complete(GuestState, GUEST_TRANSITIONS)


def check_transition(current: str, target: SessionStatus) -> None:
    """Raise IllegalTransition unless a session may go from `current` to `target`."""
    transitions.check("terminal session", TRANSITIONS, current, target)


def check_guest_transition(current: str, target: GuestState) -> None:
    """Raise IllegalTransition unless a guest may go from `current` to `target`."""
    transitions.check("guest", GUEST_TRANSITIONS, current, target)
