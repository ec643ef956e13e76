"""Transition table of GPU workers: what the control plane asks and what agents report."""

from __future__ import annotations

from hangar.core import transitions
from hangar.core.gpushare.models import WorkerStatus

W = WorkerStatus

# A worker's agent reports what its process does, so a crash (running -> stopped) and a
# restart (stopped -> running) are ordinary; only the control plane sets `stopping`.
TRANSITIONS: dict[WorkerStatus, frozenset[WorkerStatus]] = {
    W.PENDING: frozenset({W.RUNNING, W.STOPPING, W.STOPPED}),
    W.RUNNING: frozenset({W.STOPPING, W.STOPPED, W.PENDING}),
    W.STOPPING: frozenset({W.STOPPED}),
    W.STOPPED: frozenset({W.PENDING, W.RUNNING}),
}

transitions.complete(WorkerStatus, TRANSITIONS)


def check_transition(current: str, target: WorkerStatus) -> None:
    """Raise IllegalTransition unless a worker may go from `current` to `target`."""
    transitions.check("worker", TRANSITIONS, current, target)
