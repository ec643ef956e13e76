"""The one check behind every kind's transition table (`TRANSITIONS` in its lifecycle.py)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from hangar.core.errors import IllegalTransition

S = TypeVar("S", bound=StrEnum)


def check(kind: str, table: Mapping[S, frozenset[S]], current: str, target: S) -> None:
    """Raise IllegalTransition unless `table` allows `current -> target`."""
    # StrEnum members hash and compare as their text, so a status read as `str` finds its row.
    allowed = dict(table).get(current, frozenset())  # type: ignore[call-overload]
    if target not in allowed:
        raise IllegalTransition(f"{kind} cannot go from {current} to {target}")


def predecessors(table: Mapping[S, frozenset[S]], target: S) -> frozenset[S]:
    """Every state `table` lets a row move from to `target` (a conditional UPDATE's WHERE)."""
    return frozenset(s for s, targets in table.items() if target in targets)


def initial(kind: str, allowed: frozenset[S], status: S) -> S:
    """`status` for a new row; IllegalTransition unless a row of `kind` may start in it."""
    if status not in allowed:
        raise IllegalTransition(f"a {kind} cannot start as {status}")
    return status


def complete(states: type[S], table: Mapping[S, frozenset[S]]) -> None:
    """Fail at import time when a table leaves a state out (terminal ones map to nothing)."""
    missing = set(states) - set(table)
    if missing:
        raise AssertionError(f"transition table lacks {sorted(missing)}")
