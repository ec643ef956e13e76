"""Transition table of hosts: every status write goes through `move` or `predecessors`.

A reachable host is `online`, or `draining` while an admin's `draining` flag is set; the
self-loops are a registration or an admin's drain that leaves the status as it was.
"""

from __future__ import annotations

from hangar.core import transitions
from hangar.core.hosts.models import HostStatus

H = HostStatus

TRANSITIONS: dict[HostStatus, frozenset[HostStatus]] = {
    # Its agent registered, or (a configured agent) answered a poll.
    H.PENDING: frozenset({H.ONLINE, H.DRAINING}),
    # Drained or put back (the flag); silent past the timeout; its agent shut down.
    H.ONLINE: frozenset({H.ONLINE, H.DRAINING, H.UNREACHABLE, H.OFFLINE}),
    H.DRAINING: frozenset({H.DRAINING, H.ONLINE, H.UNREACHABLE, H.OFFLINE}),
    # Proof of life again (a heartbeat, a poll, a registration).
    H.UNREACHABLE: frozenset({H.ONLINE, H.DRAINING}),
    H.OFFLINE: frozenset({H.ONLINE, H.DRAINING}),
}

transitions.complete(HostStatus, TRANSITIONS)

# What a new row starts as: waiting for its agent, or a configured agent that did not answer.
INITIAL = frozenset({H.PENDING, H.UNREACHABLE})


def move(current: str, target: HostStatus) -> HostStatus:
    """`target`, to write over `current`; IllegalTransition if the table forbids it."""
    transitions.check("host", TRANSITIONS, current, target)
    return target


def initial(status: HostStatus) -> HostStatus:
    """`status` for a new row; IllegalTransition unless a host may start in it."""
    return transitions.initial("host", INITIAL, status)


def predecessors(target: HostStatus) -> frozenset[HostStatus]:
    """Every status the table lets a host move from to `target`."""
    return transitions.predecessors(TRANSITIONS, target)
