"""Request rate limits per principal and route class, on live servers with tight limits.

Every route of every face draws on one budget per principal (an API key, a user and team,
or a client address) and route class (`read`, `write`, `exec`); its responses carry
`X-RateLimit-Limit`, `-Remaining` and `-Reset`, and once the budget is spent a 429 in the
face's error shape says when to retry (`Retry-After`). With Redis, replicas share budgets.

The limits are per day: windows are aligned to the clock, and a test must not straddle one.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hangar.server.settings import Settings
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.redis import REDIS_URL, require_redis
from support.wrenn import Account, Wrenn, error_of

READ, WRITE, EXEC = 5, 4, 3
DAY = 24 * 3600


def tight(settings: Settings, redis_url: str | None = None) -> None:
    settings.rate_limits.read = f"{READ}/day"
    settings.rate_limits.write = f"{WRITE}/day"
    settings.rate_limits.exec = f"{EXEC}/day"
    settings.redis_url = redis_url


@contextlib.contextmanager
def serve(
    backend: str, data_dir: Path, database_url: str | None, redis_url: str | None = None
) -> Iterator[LiveServer]:
    settings = make_settings(data_dir, database_url, None)
    tight(settings, redis_url)
    with run_in_thread(backend, settings) as live:
        yield live


@pytest.fixture(scope="module")
def limited(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with contextlib.ExitStack() as stack:
        url = None if backend == "sqlite" else stack.enter_context(fresh_postgres_database())
        data_dir = tmp_path_factory.mktemp(f"ratelimits-{backend}")
        yield stack.enter_context(serve(backend, data_dir, url))


def address() -> str:
    """A client address no other test uses (198.18.0.0/15 is for benchmarks)."""
    n = uuid.uuid4().int
    return f"198.{18 + n % 2}.{n // 2 % 256}.{n // 512 % 256}"


def account(live: LiveServer) -> tuple[Wrenn, Account, str]:
    """A new user, from an address of its own (sign-up spends the address's write budget),
    and an API key of their team."""
    wrenn = Wrenn(live.client(headers={"X-Forwarded-For": address()}))
    owner = wrenn.signup()
    return wrenn, owner, wrenn.create_key(owner)["key"]


def key(value: str) -> dict[str, str]:
    return {"X-API-Key": value}


def assert_window(resp: httpx.Response, limit: int, remaining: int) -> None:
    assert resp.headers["x-ratelimit-limit"] == str(limit), resp.headers
    assert resp.headers["x-ratelimit-remaining"] == str(remaining), resp.headers
    reset = int(resp.headers["x-ratelimit-reset"])
    assert time.time() < reset <= time.time() + DAY + 1


def assert_limited(resp: httpx.Response, limit: int) -> None:
    """A 429 with the window's headers and when to retry (the body's shape: the caller)."""
    assert resp.status_code == 429, resp.text
    assert_window(resp, limit, 0)
    assert 1 <= int(resp.headers["retry-after"]) <= DAY


def test_wrenn_answers_429_in_its_shape_once_the_budget_is_spent(limited: LiveServer) -> None:
    _, _, api_key = account(limited)
    with limited.client(headers=key(api_key)) as http:
        for i in range(READ):
            # Every response of a limited route carries the window, errors too (a 404 here).
            path = "/v1/capsules" if i % 2 == 0 else "/v1/capsules/cl-nosuchcapsule"
            resp = http.get(path)
            assert resp.status_code in (200, 404), resp.text
            assert_window(resp, READ, READ - 1 - i)
        resp = http.get("/v1/capsules")
        assert_limited(resp, READ)
        assert error_of(resp)["code"] == "rate_limited"
    # One budget per principal, whichever face it is spent on.
    resp = httpx.get(f"{limited.url}/fastvm/v1/vms", headers=key(api_key))
    assert_limited(resp, READ)
    assert set(resp.json()) == {"error"}


def test_fastvm_answers_429_in_its_shape(limited: LiveServer) -> None:
    _, _, api_key = account(limited)
    with httpx.Client(base_url=f"{limited.url}/fastvm", headers=key(api_key)) as http:
        for i in range(READ):
            resp = http.get("/v1/vms")
            assert resp.status_code == 200, resp.text
            assert_window(resp, READ, READ - 1 - i)
        resp = http.get("/v1/vms")
        assert_limited(resp, READ)
        body = resp.json()
        assert set(body) == {"error"}
        assert isinstance(body["error"], str)
        assert "rate limit" in body["error"]


def test_principals_have_separate_budgets(limited: LiveServer) -> None:
    wrenn, owner, first = account(limited)
    second = wrenn.create_key(owner)["key"]
    for _ in range(READ):
        assert httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=key(first)).status_code == 200
    assert_limited(httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=key(first)), READ)
    # Another key of the same team, and the user's own token, have budgets of their own.
    resp = httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=key(second))
    assert resp.status_code == 200, resp.text
    assert_window(resp, READ, READ - 1)
    resp = httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=owner.headers)
    assert resp.status_code == 200, resp.text
    assert_window(resp, READ, READ - 1)
    # A user's tokens for one team are one principal: a second sign-in buys no fresh budget.
    login = wrenn.login(owner.email, owner.password)
    assert login.status_code == 200, login.text
    again = {"Authorization": f"Bearer {login.json()['token']}"}
    assert again != owner.headers
    resp = httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=again)
    assert_window(resp, READ, READ - 2)
    # Another user is untouched.
    _, _, other = account(limited)
    resp = httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=key(other))
    assert_window(resp, READ, READ - 1)


def test_a_made_up_credential_spends_its_address_budget(limited: LiveServer) -> None:
    """Random tokens are counted by the client's address, so they buy no fresh budgets."""
    who = {"X-Forwarded-For": address()}
    for i in range(READ):
        token = {"Authorization": f"Bearer not-a-token-{i}", **who}
        resp = httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=token)
        assert resp.status_code == 401, resp.text
        assert_window(resp, READ, READ - 1 - i)
    resp = httpx.get(
        f"{limited.wrenn_url}/v1/capsules", headers={"Authorization": "Bearer x", **who}
    )
    assert_limited(resp, READ)


def test_route_classes_have_separate_budgets(limited: LiveServer) -> None:
    _, _, api_key = account(limited)
    headers = key(api_key)
    for _ in range(READ):
        httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=headers)
    assert_limited(httpx.get(f"{limited.wrenn_url}/v1/capsules", headers=headers), READ)
    # A mutation draws on `write` (a refused one too: it was still served).
    resp = httpx.post(f"{limited.wrenn_url}/v1/capsules", json={"vcpus": 0}, headers=headers)
    assert resp.status_code == 400, resp.text
    assert_window(resp, WRITE, WRITE - 1)
    # Commands and streams draw on `exec`, on both faces.
    exec_urls = [
        f"{limited.wrenn_url}/v1/capsules/cl-nosuchcapsule/exec",
        f"{limited.url}/fastvm/v1/vms/00000000-0000-4000-8000-000000000000/exec",
        f"{limited.wrenn_url}/v1/capsules/cl-nosuchcapsule/exec",
    ]
    for i, url in enumerate(exec_urls):
        resp = httpx.post(url, json={"cmd": "true", "command": ["true"]}, headers=headers)
        assert resp.status_code in (400, 404), resp.text
        assert_window(resp, EXEC, EXEC - 1 - i)
    ws_url = limited.wrenn_url.replace("http", "ws", 1)
    with pytest.raises(InvalidStatus) as refusal:
        connect(f"{ws_url}/v1/capsules/cl-nosuchcapsule/exec/stream", additional_headers=headers)
    response = refusal.value.response
    assert response.status_code == 429
    assert response.headers["x-ratelimit-limit"] == str(EXEC)
    assert b"rate_limited" in response.body


def test_replicas_share_one_budget_through_redis(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two replicas on one database and one Redis: requests to either spend one budget."""
    require_redis()
    with contextlib.ExitStack() as stack:
        url = None if backend == "sqlite" else stack.enter_context(fresh_postgres_database())
        data_dir = tmp_path_factory.mktemp(f"ratelimits-redis-{backend}")
        first = stack.enter_context(serve(backend, data_dir, url, REDIS_URL))
        second = stack.enter_context(serve(backend, data_dir, url, REDIS_URL))
        _, _, api_key = account(first)
        for i in range(READ):
            replica = (first, second)[i % 2]
            resp = httpx.get(f"{replica.wrenn_url}/v1/capsules", headers=key(api_key))
            assert resp.status_code == 200, resp.text
            assert_window(resp, READ, READ - 1 - i)
        for replica in (first, second):
            resp = httpx.get(f"{replica.wrenn_url}/v1/capsules", headers=key(api_key))
            assert_limited(resp, READ)
            assert error_of(resp)["code"] == "rate_limited"
            resp = httpx.get(f"{replica.url}/fastvm/v1/vms", headers=key(api_key))
            assert_limited(resp, READ)
            assert set(resp.json()) == {"error"}
