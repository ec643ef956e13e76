"""Outbound requests on behalf of users cannot reach inside, nor show what answered there.

Internal services are played by listeners on loopback that answer with a secret body. With the
guard as it ships (the shared `server`), every internal form of address is refused, and the
answer is the same as for a closed port. A server that allows one loopback address (127.0.0.2)
shows the rest: the body of an allowed destination is never echoed, and a redirect from it to
another internal address is not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hangar.core.channels.models import Channel, Delivery
from hangar.core.clock import utcnow
from hangar.core.config import OutboundSettings
from hangar.core.db import Database
from hangar.core.events.envelope import Event
from hangar.core.ids import new_id
from hangar.core.security.outbound import is_public, outbound_client
from support.live import (
    LiveServer,
    database_url_of,
    fresh_postgres_database,
    make_settings,
    run_in_thread,
)
from support.wrenn import Account, Wrenn, error_of

REFUSED = "could not deliver: the destination could not be reached"


@dataclass
class Listener:
    """An internal service: answers `status` with a secret body (or redirects) and counts."""

    host: str
    status: int = 200
    location: str | None = None
    secret: str = field(default_factory=lambda: f"TOP-SECRET-{uuid.uuid4().hex}")
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            listener.hits.append((self.path, dict(self.headers)))
            body = listener.secret.encode()
            self.send_response(listener.status)
            if listener.location:
                self.send_header("Location", listener.location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def log_message(self, *_: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET

    httpd = Server((listener.host, listener.port), Handler)
    listener.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def channel_test(
    http: httpx.Client, who: Account, provider: str, config: dict[str, str]
) -> httpx.Response:
    return http.post(
        "/v1/channels/test", json={"provider": provider, "config": config}, headers=who.headers
    )


def refusal(http: httpx.Client, who: Account, url: str, provider: str = "webhook") -> str:
    """The message a channel test to `url` is refused with (400 in Wrenn's error shape)."""
    config = {
        "webhook": {"url": url},
        "slack": {"webhook_url": url},
        "matrix": {"homeserver_url": url, "access_token": "syt_x", "room_id": "!r:example.org"},
    }[provider]
    resp = channel_test(http, who, provider, config)
    assert resp.status_code == 400, resp.text
    message: str = error_of(resp)["message"]
    return message


@pytest.fixture
def internal() -> Iterator[Listener]:
    with listening(Listener("127.0.0.1", status=500)) as listener:
        yield listener


@pytest.fixture
def internal_v6() -> Iterator[Listener]:
    with listening(Listener("::1")) as listener:
        yield listener


def test_internal_destinations_are_refused_without_echo(
    http: httpx.Client,
    alice: Account,
    server: LiveServer,
    internal: Listener,
    internal_v6: Listener,
) -> None:
    port = internal.port
    targets = [
        internal.url(),
        f"http://localhost:{port}/hook",  # a name that resolves to loopback
        f"http://{socket.gethostname()}:{port}/hook",  # this host's own name
        f"http://127.1:{port}/hook",
        f"http://2130706433:{port}/hook",  # 127.0.0.1 as one number
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        internal_v6.url(),
        f"http://0.0.0.0:{port}/hook",
        f"http://10.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/hook",
        f"{server.url}/wrenn/v1/auth/login",  # the control plane's own API
    ]
    for url in targets:
        for provider in ("webhook", "slack", "matrix"):
            message = refusal(http, alice, url, provider)
            assert message == f"{provider}: {REFUSED}", (url, message)
    assert internal.hits == []
    assert internal_v6.hits == []


def test_a_refused_address_reads_like_a_closed_port(
    http: httpx.Client, alice: Account, internal: Listener
) -> None:
    open_port = refusal(http, alice, internal.url())
    closed = refusal(http, alice, f"http://127.0.0.1:{closed_port()}/hook")
    unresolvable = refusal(http, alice, "http://no-such-host.invalid/hook")
    assert open_port == closed == unresolvable == f"webhook: {REFUSED}"


def test_deliveries_are_guarded_too(
    http: httpx.Client, alice: Account, server: LiveServer, internal: Listener
) -> None:
    name = f"internal-{uuid.uuid4().hex[:8]}"
    made = http.post(
        "/v1/channels",
        json={
            "name": name,
            "provider": "webhook",
            "config": {"url": internal.url()},
            "events": ["capsule.created"],
        },
        headers=alice.headers,
    )
    assert made.status_code == 201, made.text
    error = asyncio.run(_deliver_once(server, name))
    assert error == REFUSED
    assert internal.hits == []


async def _deliver_once(server: LiveServer, channel_name: str) -> str | None:
    """Enqueue one event for the channel, as the relay would, and wait for the first try."""
    db = Database(database_url_of(server.data_dir, server.settings.database_url))
    try:
        async with db.session() as session:
            channel = (
                await session.execute(select(Channel).where(Channel.name == channel_name))
            ).scalar_one()
            event = Event(new_id(), "capsule.created", 1, utcnow(), None, channel.team_id, {})
            delivery = Delivery(
                channel_id=channel.id,
                event_id=event.id,
                event_type=event.type,
                event=event.to_dict(),
            )
            session.add(delivery)
            await session.commit()
            delivery_id = delivery.id
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with db.session() as session:
                row = await session.get(Delivery, delivery_id)
                assert row is not None
                if row.attempts:
                    return row.last_error
            await asyncio.sleep(0.1)
        raise AssertionError("the delivery was never attempted")
    finally:
        await db.dispose()


# --- A server whose operator allows one internal address, 127.0.0.2 ------------------------


@pytest.fixture(scope="module")
def telegram() -> Iterator[Listener]:
    """Telegram's API, as the operator configured it (on loopback: trusted, being theirs)."""
    with listening(Listener("127.0.0.1")) as listener:
        yield listener


@pytest.fixture(scope="module")
def allowing_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, telegram: Listener
) -> Iterator[LiveServer]:
    def serve(url: str | None) -> Iterator[LiveServer]:
        settings = make_settings(tmp_path_factory.mktemp(f"ssrf-{backend}"), url, None)
        settings.outbound.allow = ["127.0.0.2/32"]
        settings.channels.telegram_api_url = telegram.url("/api")
        with run_in_thread(backend, settings) as live:
            yield live

    if backend == "postgres":
        with fresh_postgres_database() as url:
            yield from serve(url)
    else:
        yield from serve(None)


@pytest.fixture
def allowed_http(allowing_server: LiveServer) -> Iterator[httpx.Client]:
    with allowing_server.client() as client:
        yield client


def test_an_allowed_destination_is_reached_but_its_body_never_shown(
    allowed_http: httpx.Client,
) -> None:
    who = Wrenn(allowed_http).signup(name="Allowed")
    with listening(Listener("127.0.0.2", status=200)) as ok:
        resp = channel_test(allowed_http, who, "webhook", {"url": ok.url("/ok")})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"status": "ok"}
        assert ok.secret not in resp.text
        [(path, headers)] = ok.hits
        assert path == "/ok"
        assert headers["Host"] == f"127.0.0.2:{ok.port}"
    with listening(Listener("127.0.0.2", status=500)) as failing:
        message = refusal(allowed_http, who, failing.url())
        assert message == "webhook: the destination answered HTTP 500"
        assert failing.secret not in message
    # A closed port there reads like any refused destination.
    assert refusal(allowed_http, who, f"http://127.0.0.2:{closed_port('127.0.0.2')}/") == (
        f"webhook: {REFUSED}"
    )


def test_a_redirect_to_an_internal_address_is_not_followed(
    allowed_http: httpx.Client, internal: Listener
) -> None:
    who = Wrenn(allowed_http).signup(name="Redirected")
    for status in (302, 307, 308):
        redirect = Listener("127.0.0.2", status=status, location=internal.url("/stolen"))
        with listening(redirect):
            message = refusal(allowed_http, who, redirect.url())
        assert message == f"webhook: the destination answered HTTP {status}"
        assert redirect.secret not in message
        assert internal.secret not in message
        assert len(redirect.hits) == 1
    # The allow-list names 127.0.0.2 only: its neighbour stays refused.
    assert refusal(allowed_http, who, internal.url()) == f"webhook: {REFUSED}"
    assert internal.hits == []


def test_operator_endpoints_are_trusted_for_their_own_requests_only(
    allowed_http: httpx.Client, telegram: Listener
) -> None:
    who = Wrenn(allowed_http).signup(name="Operator")
    sent = channel_test(allowed_http, who, "telegram", {"bot_token": "123:abc", "chat_id": "42"})
    assert sent.status_code == 200, sent.text
    assert telegram.hits[-1][0] == "/api/bot123:abc/sendMessage"
    # A token cannot climb out of its path segment on the operator's host.
    climbing = {"bot_token": "1:x/../../admin", "chat_id": "42"}
    assert channel_test(allowed_http, who, "telegram", climbing).status_code == 200
    assert telegram.hits[-1][0] == "/api/bot1:x%2F..%2F..%2Fadmin/sendMessage"
    # The same origin as a user's webhook URL is refused: the trust is the operator's.
    hits = len(telegram.hits)
    assert refusal(allowed_http, who, telegram.url("/api/x")) == f"webhook: {REFUSED}"
    assert len(telegram.hits) == hits


# --- The connection itself: resolved once, connected to the address that was checked --------


class Rebinding:
    """A DNS server that answers each name from a script, one answer per query."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def __call__(self, host: str, _port: int) -> Sequence[str]:
        self.queries.append(host)
        script = self.answers[host]
        return script.pop(0) if len(script) > 1 else script[0]


def test_dns_rebinding_gets_nothing() -> None:
    allowed = Listener("127.0.0.2")
    with listening(allowed):
        port = allowed.port
        with listening(Listener("127.0.0.1", port=port)) as same_port:
            dns = Rebinding(
                {
                    "rebind.test": [["127.0.0.2"], ["127.0.0.1"]],
                    "mixed.test": [["127.0.0.2", "127.0.0.1"]],
                    "inside.test": [["10.1.2.3"]],
                }
            )
            settings = OutboundSettings(allow=["127.0.0.2/32"])

            async def run() -> list[object]:
                got: list[object] = []
                for name in ("rebind.test", "rebind.test", "mixed.test", "inside.test"):
                    # A new client each time: no pooled connection to fall back on.
                    async with outbound_client(settings, resolver=dns) as client:
                        try:
                            got.append((await client.get(f"http://{name}:{port}/p")).status_code)
                        except httpx.ConnectError as exc:
                            got.append(type(exc).__name__)
                return got

            results = asyncio.run(run())
        # First answer allowed and used; the rebound answer refused, never connected to.
        assert results == [200, "ConnectError", "ConnectError", "ConnectError"]
        assert dns.queries == ["rebind.test", "rebind.test", "mixed.test", "inside.test"]
        [(_, headers)] = allowed.hits
        assert headers["Host"] == f"rebind.test:{port}"  # the name kept, the address pinned
        assert same_port.hits == []


def test_redirects_are_not_followed_even_when_asked() -> None:
    internal = Listener("127.0.0.1")
    with listening(internal):
        redirect = Listener("127.0.0.2", status=302, location=internal.url("/stolen"))
        with listening(redirect):

            async def run() -> None:
                settings = OutboundSettings(allow=["127.0.0.2/32"])
                async with outbound_client(settings) as client:
                    with pytest.raises(httpx.ConnectError):
                        await client.get(redirect.url(), follow_redirects=True)

            asyncio.run(run())
    assert len(redirect.hits) == 1
    assert internal.hits == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("::ffff:93.184.215.14", True),
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
