"""Request body limits and sign-in throttling, on a live server with tight limits.

Bodies: the faces refuse a JSON body over `HANGAR_LIMITS__MAX_BODY_BYTES` with 413 in their
own error shape, before reading it when it declares its length and as soon as the limit is
passed when it is streamed without one, so the server does not grow by the body's size.

Throttling: sign-in and token endpoints count every attempt per account and per client
address (the test clients pose as distinct addresses through `X-Forwarded-For`, which uvicorn
trusts from 127.0.0.1), in memory or in Redis (`HANGAR_REDIS_URL`, shared by replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hangar.server.settings import Settings
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.redis import REDIS_URL, require_redis
from support.wrenn import PASSWORD, Wrenn, error_of, unique_email

PER_ACCOUNT = 5
PER_ADDRESS = 20
BIG = 100 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


@contextlib.contextmanager
def serve(
    backend: str,
    data_dir: Path,
    configure: Callable[[Settings], None],
    database_url: str | None = None,
) -> Iterator[LiveServer]:
    """A live Hangar on `backend` (on `database_url`, else a database of its own)."""

    def run(url: str | None) -> Iterator[LiveServer]:
        settings = make_settings(data_dir, url, None)
        configure(settings)
        with run_in_thread(backend, settings) as live:
            yield live

    if database_url is not None or backend == "sqlite":
        yield from run(database_url)
    else:
        with fresh_postgres_database() as url:
            yield from run(url)


def tight(settings: Settings) -> None:
    settings.limits.auth_per_account = f"{PER_ACCOUNT}/minute"
    settings.limits.auth_per_address = f"{PER_ADDRESS}/minute"


@pytest.fixture(scope="module")
def limited(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(backend, tmp_path_factory.mktemp(f"limits-{backend}"), tight) as live:
        yield live


def address() -> str:
    """A client address no other test uses (198.18.0.0/15 is for benchmarks)."""
    n = uuid.uuid4().int
    return f"198.{18 + n % 2}.{n // 2 % 256}.{n // 512 % 256}"


def from_(addr: str) -> dict[str, str]:
    return {"X-Forwarded-For": addr}


# -- bodies -------------------------------------------------------------------------------------


class PeakRss:
    """This process's peak resident memory while the block runs (the server runs in it)."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def chunks(total: int) -> Iterator[bytes]:
    """`total` bytes in 1 MiB chunks, the same object each time (the client holds 1 MiB)."""
    sent = 0
    while sent < total:
        yield CHUNK
        sent += len(CHUNK)


def post_big(url: str, *, declare: bool) -> httpx.Response | None:
    """POST 100 MB of JSON-typed body; the response, or None when the server closed first."""
    headers = {"content-type": "application/json"}
    if declare:
        headers["content-length"] = str(BIG)
    try:
        return httpx.post(url, content=chunks(BIG), headers=headers, timeout=60)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return None


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_and_never_held(limited: LiveServer, declare: bool) -> None:
    url = f"{limited.wrenn_url}/v1/auth/login"
    with PeakRss() as rss:
        resp = post_big(url, declare=declare)
    assert resp is not None, "the server closed the connection without an answer"
    assert resp.status_code == 413, resp.text
    assert error_of(resp)["code"] == "too_large"
    # Before, 100 MB grew the server by 227 MB; now at most the 1 MiB limit is ever held.
    assert rss.growth < 32 * 1024 * 1024, f"grew by {rss.growth / 2**20:.0f} MiB"
    # The server is fine afterwards.
    assert httpx.get(f"{limited.url}/livez", timeout=10).status_code == 200


def test_the_limit_holds_on_every_face_in_its_shape(limited: LiveServer) -> None:
    wrenn = Wrenn(limited.client())
    owner = wrenn.signup()
    key = wrenn.create_key(owner)["key"]
    body = b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    headers = {"X-API-Key": key, "content-type": "application/json"}
    resp = httpx.post(f"{limited.url}/fastvm/v1/vms", content=body, headers=headers, timeout=30)
    assert resp.status_code == 413, resp.text
    assert set(resp.json()) == {"error"}
    assert isinstance(resp.json()["error"], str)
    # Whatever the content type: the face would read it all the same.
    for content_type in ("text/plain", "application/octet-stream"):
        resp = httpx.post(
            f"{limited.wrenn_url}/v1/capsules",
            content=body,
            headers={**headers, "content-type": content_type},
            timeout=30,
        )
        assert resp.status_code == 413, resp.text
        assert error_of(resp)["code"] == "too_large"


def test_a_body_under_the_limit_is_served(limited: LiveServer) -> None:
    """Just under 1 MiB is an ordinary (wrong) login, not a 413."""
    resp = httpx.post(
        f"{limited.wrenn_url}/v1/auth/login",
        json={"email": unique_email(), "password": "p" * (1024 * 1024 - 100)},
        headers=from_(address()),
        timeout=30,
    )
    assert resp.status_code == 401, resp.text


# -- throttling ---------------------------------------------------------------------------------


def assert_throttled(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    assert error_of(resp)["code"] == "rate_limited"
    retry_after = int(resp.headers["retry-after"])
    assert 1 <= retry_after <= 60


async def wrong_logins(base: str, email: str, addresses: list[str]) -> list[httpx.Response]:
    """One wrong-password login per address, all at once."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/auth/login",
                    json={"email": email, "password": "wrong password"},
                    headers=from_(a),
                )
                for a in addresses
            )
        )


def test_concurrent_wrong_passwords_for_one_account_are_throttled(limited: LiveServer) -> None:
    account = Wrenn(limited.client()).signup()
    # 40 at once, each from its own address: only the account's limit can stop them.
    responses = asyncio.run(
        wrong_logins(limited.wrenn_url, account.email, [address() for _ in range(40)])
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == PER_ACCOUNT, statuses
    assert statuses.count(429) == 40 - PER_ACCOUNT, statuses
    for resp in responses:
        if resp.status_code == 429:
            assert_throttled(resp)
    # The right password waits too: the account's attempts are spent for the window.
    resp = Wrenn(limited.client(headers=from_(address()))).login(account.email, PASSWORD)
    assert_throttled(resp)


def test_one_address_is_throttled_across_accounts_and_endpoints(limited: LiveServer) -> None:
    me, other = address(), address()
    with limited.client(headers=from_(me)) as http:
        statuses = [
            http.post(
                "/v1/auth/login", json={"email": unique_email(), "password": "wrong password"}
            ).status_code
            for _ in range(PER_ADDRESS)
        ]
        assert statuses == [401] * PER_ADDRESS
        # Spent for this address on every throttled endpoint, whichever account or secret.
        assert_throttled(
            http.post("/v1/auth/login", json={"email": unique_email(), "password": "x" * 9})
        )
        assert_throttled(
            http.post(
                "/v1/auth/signup",
                json={"email": unique_email(), "password": PASSWORD, "name": "N"},
            )
        )
        assert_throttled(
            http.post("/v1/hosts/register", json={"token": "hrt_x", "address": "10.0.0.1:7000"})
        )
        assert_throttled(http.post("/v1/hosts/auth/refresh", json={"refresh_token": "nope"}))
        assert_throttled(http.get("/v1/auth/oauth/github/callback", params={"code": "c"}))
    # Another address is not affected.
    with limited.client(headers=from_(other)) as http:
        resp = http.post("/v1/auth/login", json={"email": unique_email(), "password": "x" * 9})
        assert resp.status_code == 401


def test_host_registration_guesses_are_throttled(limited: LiveServer) -> None:
    with limited.client(headers=from_(address())) as http:
        statuses = [
            http.post(
                "/v1/hosts/register", json={"token": f"hrt_{i}", "address": "10.0.0.1:7000"}
            ).status_code
            for i in range(PER_ADDRESS + 5)
        ]
    assert set(statuses[:PER_ADDRESS]) == {401}, statuses
    assert statuses[PER_ADDRESS:] == [429] * 5, statuses


def test_switch_team_is_throttled_per_user(limited: LiveServer) -> None:
    wrenn = Wrenn(limited.client())
    owner = wrenn.signup()
    for _ in range(PER_ACCOUNT):
        resp = wrenn.http.post(
            "/v1/auth/switch-team",
            json={"team_id": owner.team_id},
            headers={**owner.headers, **from_(address())},
        )
        assert resp.status_code == 200, resp.text
    assert_throttled(
        wrenn.http.post(
            "/v1/auth/switch-team",
            json={"team_id": owner.team_id},
            headers={**owner.headers, **from_(address())},
        )
    )


def test_replicas_share_counts_through_redis(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two replicas on one database and one Redis: attempts on either count for both."""
    require_redis()

    def shared(settings: Settings) -> None:
        tight(settings)
        settings.redis_url = REDIS_URL

    with contextlib.ExitStack() as stack:
        url = None if backend == "sqlite" else stack.enter_context(fresh_postgres_database())
        data_dir = tmp_path_factory.mktemp(f"redis-{backend}")
        first = stack.enter_context(serve(backend, data_dir, shared, url))
        second = stack.enter_context(serve(backend, data_dir, shared, url))
        account = Wrenn(first.client()).signup()
        who = from_(address())
        statuses = []
        for i in range(PER_ACCOUNT + 2):
            replica = (first, second)[i % 2]
            with replica.client(headers=who) as http:
                resp = http.post(
                    "/v1/auth/login", json={"email": account.email, "password": "wrong password"}
                )
                statuses.append(resp.status_code)
                if resp.status_code == 429:
                    assert_throttled(resp)
        assert statuses == [401] * PER_ACCOUNT + [429, 429], statuses
