"""Every kind's transition table: each allowed move accepted, every other one refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from itertools import product
from typing import Any

import pytest
from sqlalchemy import ColumnElement
from sqlalchemy.dialects import sqlite

from hangar.core.allocations import lifecycle as allocations
from hangar.core.allocations.models import Allocation, AllocationStatus
from hangar.core.capsules import lifecycle as capsules
from hangar.core.capsules.models import (
    LIVE_STATUSES,
    Capsule,
    CapsuleStatus,
    SnapshotStatus,
    Template,
)
from hangar.core.db.base import StatusText
from hangar.core.errors import Conflict, IllegalTransition
from hangar.core.gpushare import lifecycle as gpushare
from hangar.core.gpushare.models import AgentStatus, GpuAgent, GpuWorker, WorkerStatus
from hangar.core.hosts import lifecycle as hosts
from hangar.core.hosts.liveness import DOWN, ON_HOST, UP
from hangar.core.hosts.models import Host, HostStatus
from hangar.core.terminals import lifecycle as terminals
from hangar.core.terminals.models import (
    GuestState,
    SessionStatus,
    TerminalGuest,
    TerminalSession,
)

C, H = CapsuleStatus, HostStatus

# Written out by hand, so a change to a table is a change to this list too.
CAPSULE_MOVES = {
    (C.PENDING, C.STARTING),  # a provisioner's claim
    (C.PENDING, C.ERROR),  # its snapshot is gone; its host reports it stopped
    (C.PENDING, C.STOPPED),
    (C.STARTING, C.PENDING),  # requeued
    (C.STARTING, C.RUNNING),
    (C.STARTING, C.PAUSED),
    (C.STARTING, C.ERROR),  # out of attempts
    (C.STARTING, C.STOPPED),
    (C.RUNNING, C.PAUSED),
    (C.RUNNING, C.MISSING),
    (C.RUNNING, C.ERROR),
    (C.RUNNING, C.STOPPED),
    (C.PAUSED, C.RUNNING),
    (C.PAUSED, C.MISSING),
    (C.PAUSED, C.ERROR),
    (C.PAUSED, C.STOPPED),
    (C.MISSING, C.MISSING),  # a new reason
    (C.MISSING, C.RUNNING),
    (C.MISSING, C.PAUSED),
    (C.MISSING, C.ERROR),
    (C.MISSING, C.STOPPED),
    (C.ERROR, C.ERROR),  # a new reason
    (C.ERROR, C.RUNNING),
    (C.ERROR, C.PAUSED),
    (C.ERROR, C.STOPPED),
}

HOST_MOVES = {
    (H.PENDING, H.ONLINE),
    (H.PENDING, H.DRAINING),
    (H.ONLINE, H.ONLINE),  # a registration or drain that changes nothing
    (H.ONLINE, H.DRAINING),
    (H.ONLINE, H.UNREACHABLE),
    (H.ONLINE, H.OFFLINE),
    (H.DRAINING, H.DRAINING),
    (H.DRAINING, H.ONLINE),
    (H.DRAINING, H.UNREACHABLE),
    (H.DRAINING, H.OFFLINE),
    (H.UNREACHABLE, H.ONLINE),
    (H.UNREACHABLE, H.DRAINING),
    (H.OFFLINE, H.ONLINE),
    (H.OFFLINE, H.DRAINING),
}


def _pairs(table: Mapping[Any, frozenset[Any]]) -> set[tuple[Any, Any]]:
    return {(a, b) for a, targets in table.items() for b in targets}


def test_capsule_table_is_the_written_one() -> None:
    assert _pairs(capsules.TRANSITIONS) == CAPSULE_MOVES


def test_host_table_is_the_written_one() -> None:
    assert _pairs(hosts.TRANSITIONS) == HOST_MOVES


KINDS: list[tuple[type[StrEnum], Mapping[Any, frozenset[Any]], Callable[[str, Any], object]]] = [
    (CapsuleStatus, capsules.TRANSITIONS, capsules.move),
    (HostStatus, hosts.TRANSITIONS, hosts.move),
    (AllocationStatus, allocations.TRANSITIONS, allocations.check_transition),
    (WorkerStatus, gpushare.TRANSITIONS, gpushare.check_transition),
    (SessionStatus, terminals.TRANSITIONS, terminals.check_transition),
    (GuestState, terminals.GUEST_TRANSITIONS, terminals.check_guest_transition),
]


@pytest.mark.parametrize(
    ("states", "table", "check"), KINDS, ids=lambda k: getattr(k, "__name__", "")
)
def test_every_move_is_allowed_or_refused_by_its_table(
    states: type[StrEnum], table: Mapping[Any, frozenset[Any]], check: Callable[[str, Any], object]
) -> None:
    assert set(table) == set(states)  # every state has a row, terminal ones an empty one
    allowed = _pairs(table)
    for current, target in product(states, states):
        if (current, target) in allowed:
            check(current, target)
        else:
            with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
                check(current, target)
        # A status read back from the database is plain text: the same answer.
        if (current, target) in allowed:
            check(str(current.value), target)
    with pytest.raises(IllegalTransition):
        check("no-such-status", next(iter(states)))


def test_an_illegal_transition_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        capsules.move(C.STOPPED, C.RUNNING)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (C.STOPPED, C.RUNNING),  # a destroyed capsule never comes back
        (C.STOPPED, C.STOPPED),  # nor is destroyed twice
        (C.PENDING, C.RUNNING),  # only through a claim (starting)
        (C.PENDING, C.MISSING),  # never on a host, so never lost with one
        (C.RUNNING, C.PENDING),
        (C.RUNNING, C.RUNNING),
        (C.PAUSED, C.STARTING),
        (C.ERROR, C.MISSING),
        (C.ERROR, C.PENDING),
    ],
)
def test_forbidden_capsule_moves(current: CapsuleStatus, target: CapsuleStatus) -> None:
    with pytest.raises(IllegalTransition):
        capsules.move(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (H.PENDING, H.UNREACHABLE),  # never up, so never down
        (H.PENDING, H.OFFLINE),
        (H.ONLINE, H.PENDING),  # registered once
        (H.UNREACHABLE, H.OFFLINE),  # only an up host goes down
        (H.OFFLINE, H.UNREACHABLE),
        (H.OFFLINE, H.PENDING),
    ],
)
def test_forbidden_host_moves(current: HostStatus, target: HostStatus) -> None:
    with pytest.raises(IllegalTransition):
        hosts.move(current, target)


def test_move_gives_the_target_to_write() -> None:
    assert capsules.move("running", C.PAUSED) is C.PAUSED
    assert hosts.move("pending", H.ONLINE) is H.ONLINE


def test_predecessors_are_read_from_the_table() -> None:
    # The conditional UPDATEs built from these: claim, requeue, destroy, host down.
    assert capsules.predecessors(C.STARTING) == {C.PENDING}
    assert capsules.predecessors(C.PENDING) == {C.STARTING}
    assert capsules.predecessors(C.STOPPED) == set(LIVE_STATUSES)
    assert capsules.predecessors(C.MISSING) == {C.RUNNING, C.PAUSED, C.MISSING}
    for down in DOWN:
        assert hosts.predecessors(down) == set(UP)
    for status in C:
        assert capsules.predecessors(status) == {a for a, b in CAPSULE_MOVES if b == status}


def _sql(clause: ColumnElement[bool]) -> str:
    return str(clause.compile(compile_kwargs={"literal_binds": True}))


def test_moving_builds_the_where_clause_it_replaced() -> None:
    one = capsules.moving([C.STARTING], C.PENDING)
    assert _sql(one) == _sql(Capsule.status == C.STARTING)
    many = capsules.moving(ON_HOST, C.MISSING)
    assert _sql(many) == _sql(Capsule.status.in_(sorted(ON_HOST)))


def test_moving_refuses_a_source_the_table_does_not_allow() -> None:
    with pytest.raises(IllegalTransition, match="from pending to missing"):
        capsules.moving([C.RUNNING, C.PENDING], C.MISSING)
    with pytest.raises(IllegalTransition):
        capsules.moving([C.STOPPED], C.RUNNING)


def test_new_rows_start_only_where_allowed() -> None:
    assert {s for s in C if _starts(capsules.initial, s)} == {C.PENDING, C.STARTING}
    assert {s for s in H if _starts(hosts.initial, s)} == {H.PENDING, H.UNREACHABLE}


def _starts(initial: Callable[[Any], object], status: StrEnum) -> bool:
    try:
        initial(status)
    except IllegalTransition:
        return False
    return True


TYPED: list[tuple[Any, type[StrEnum]]] = [
    (Capsule.__table__.c.status, CapsuleStatus),
    (Template.__table__.c.status, SnapshotStatus),
    (Host.__table__.c.status, HostStatus),
    (Allocation.__table__.c.status, AllocationStatus),
    (GpuAgent.__table__.c.status, AgentStatus),
    (GpuWorker.__table__.c.status, WorkerStatus),
    (TerminalSession.__table__.c.status, SessionStatus),
    (TerminalGuest.__table__.c.state, GuestState),
]


@pytest.mark.parametrize(("column", "states"), TYPED, ids=lambda k: getattr(k, "__name__", ""))
def test_status_columns_are_typed(column: Any, states: type[StrEnum]) -> None:
    dialect = sqlite.dialect()
    kind = column.type
    assert isinstance(kind, StatusText)
    assert kind.enum is states
    for status in states:
        assert kind.process_bind_param(status, dialect) == status.value
        assert kind.process_result_value(status.value, dialect) is status
    with pytest.raises(ValueError, match="nope"):
        kind.process_bind_param("nope", dialect)
    with pytest.raises(ValueError, match="is not a valid"):
        kind.process_bind_param("", dialect)  # no empty string meaning "none"
