"""Wrenn-style ids: a prefix and the core UUID in 25 base-36 digits."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.faces.wrenn import ids


@given(st.uuids())
def test_round_trip(value: uuid.UUID) -> None:
    wire = ids.encode(ids.TEAM, str(value))
    assert wire.startswith("team-")
    assert len(wire) == len("team-") + 25
    assert wire == wire.lower()
    assert ids.decode(ids.TEAM, wire) == str(value)


@pytest.mark.parametrize("n", [0, 1, 35, 36, (1 << 128) - 1])
def test_extremes(n: int) -> None:
    core = str(uuid.UUID(int=n))
    wire = ids.encode(ids.USER, core)
    assert len(wire) == len("usr-") + 25
    assert ids.decode(ids.USER, wire) == core


def test_known_value() -> None:
    assert ids.encode(ids.KEY, str(uuid.UUID(int=36**2 + 1))) == "key-" + "0" * 22 + "101"


def test_ids_sort_like_their_uuids() -> None:
    values = sorted(uuid.uuid4() for _ in range(50))
    wires = [ids.encode(ids.TEAM, str(v)) for v in values]
    assert wires == sorted(wires)


@pytest.mark.parametrize(
    "wire",
    [
        "usr-" + "0" * 25,  # another kind of id
        "team-" + "0" * 24,  # too short
        "team-" + "0" * 26,  # too long
        "team-" + "A" * 25,  # upper case is not ours
        "team-" + "0" * 24 + "!",
        "team-" + "z" * 25,  # more than 128 bits
        "team" + "0" * 25,
        "team_" + "0" * 25,
        "",
        "team-",
        str(uuid.uuid4()),
    ],
)
def test_malformed_ids_decode_to_nothing(wire: str) -> None:
    assert ids.decode(ids.TEAM, wire) == ""
