"""Pagination in the core, through both faces' lists (issue 13).

Neither the Wrenn nor the FastVM contract documents pagination on its list: `limit` and
`offset` are optional extras there, the body stays the documented bare list, the total is in
`X-Total-Count`, and out-of-range values are 400 in each face's error shape.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hangar.core.errors import InvalidInput
from hangar.core.pagination import MAX_LIMIT, Page, PageRequest

from .conftest import Kit, Team

CAPSULES = 5
LISTS = {"wrenn": "/wrenn/v1/capsules", "fastvm": "/fastvm/v1/vms"}


@pytest.fixture
def five(kit: Kit, team: Team) -> list[str]:
    """Five capsules of the team, newest first, as the full list shows them."""
    with kit.client() as c:
        for _ in range(CAPSULES):
            made = c.post("/wrenn/v1/capsules", json={"memory_mb": 256}, headers=team.headers)
            assert made.status_code == 201, made.text
        listed = c.get("/wrenn/v1/capsules", headers=team.headers)
    assert listed.status_code == 200
    assert listed.headers["x-total-count"] == str(CAPSULES)
    return [capsule["id"] for capsule in listed.json()]


def page(c: httpx.Client, team: Team, face: str, **params: Any) -> httpx.Response:
    answer = c.get(LISTS[face], params=params, headers=team.headers)
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize("face", ["wrenn", "fastvm"])
def test_limit_and_offset_walk_the_list(kit: Kit, team: Team, five: list[str], face: str) -> None:
    with kit.client() as c:
        everything = [item["id"] for item in page(c, team, face).json()]
        assert len(everything) == CAPSULES
        walked: list[str] = []
        for offset in range(0, CAPSULES + 2, 2):
            answer = page(c, team, face, limit=2, offset=offset)
            assert answer.headers["x-total-count"] == str(CAPSULES)
            items = [item["id"] for item in answer.json()]
            assert len(items) == min(2, max(0, CAPSULES - offset))
            walked += items
        assert walked == everything  # in order, none skipped, none twice
        assert [item["id"] for item in page(c, team, face, limit=1).json()] == everything[:1]
        tail = page(c, team, face, offset=3)
        assert [item["id"] for item in tail.json()] == everything[3:]
        past = page(c, team, face, limit=10, offset=50)
        assert past.json() == []
        assert past.headers["x-total-count"] == str(CAPSULES)
    if face == "wrenn":
        assert everything == five


BAD = [
    {"limit": 0},
    {"limit": MAX_LIMIT + 1},
    {"limit": -3},
    {"offset": -1},
    {"limit": "many"},
    {"offset": "1.5"},
]


@pytest.mark.parametrize("params", BAD, ids=[str(p) for p in BAD])
def test_invalid_values_are_400_in_each_faces_shape(
    kit: Kit, team: Team, params: dict[str, Any]
) -> None:
    with kit.client() as c:
        wrenn = c.get(LISTS["wrenn"], params=params, headers=team.headers)
        fastvm = c.get(LISTS["fastvm"], params=params, headers=team.headers)
    assert wrenn.status_code == 400, wrenn.text
    assert wrenn.json()["error"]["code"] == "invalid_request"
    assert wrenn.json()["error"]["message"]
    assert fastvm.status_code == 400, fastvm.text
    assert set(fastvm.json()) == {"error"}
    assert isinstance(fastvm.json()["error"], str)


def test_the_core_page_types() -> None:
    request = PageRequest(limit=2, offset=4)
    assert Page(["e", "f"], 7, request).has_more
    assert not Page(["g"], 7, PageRequest(limit=2, offset=6)).has_more
    assert Page([1, 2], 2, PageRequest()).map(str).items == ["1", "2"]
    for limit, offset in [(0, 0), (MAX_LIMIT + 1, 0), (None, -1)]:
        with pytest.raises(InvalidInput):
            PageRequest(limit=limit, offset=offset)
