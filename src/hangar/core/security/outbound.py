"""The outbound-request guard: what Hangar fetches on behalf of users cannot reach inside.

A user-supplied URL (a channel's webhook, a Matrix homeserver) must not turn the control plane
into a proxy into its own network: loopback, link-local (cloud metadata), private, unique-local,
multicast, unspecified and reserved addresses, the same embedded in IPv6 (IPv4-mapped and
-compatible, 6to4, NAT64, Teredo), and this host's own addresses are refused unless the operator
allows them (`HANGAR_OUTBOUND__*`).

The check sits in the connection itself: each TCP connect resolves the name once, checks every
address, and connects to a checked one, so a name that answers differently the second time
(DNS rebinding) gets nothing. The URL, the Host header, TLS SNI and certificate checks are left
as they are, and connections stay pooled per name. Redirects are never followed.

Endpoints the operator configured (GitHub OAuth, Telegram's API base) are trusted: requests
marked `OPERATOR_ENDPOINT` to exactly those origins skip the check. A user URL is never marked.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx
import structlog

from hangar.core.config import OutboundSettings

log = structlog.get_logger("hangar.outbound")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Mark a request to an operator-configured endpoint: `http.post(url, extensions=...)`.
OPERATOR_ENDPOINT: dict[str, typing.Any] = {"hangar_operator_endpoint": True}

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # embeds an IPv4 address in its last 32 bits
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: site-local translation
_COMPAT = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible addresses
_NEVER_LOCAL = {4: "192.0.2.1", 6: "2001:db8::1"}  # documentation ranges: never assigned


class DestinationRefused(httpcore.ConnectError):
    """The destination is not one Hangar may reach on a user's behalf."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address stands for, in the forms that route to them."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(ip: Address) -> bool:
    """Whether `ip` is a globally routed unicast address, also for what it embeds."""
    if ip.is_multicast or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip not in _LOCAL_NAT64 and all(is_public(v4) for v4 in _embedded_ipv4(ip))
    return True


@functools.cache
def _nonlocal_bind(version: int) -> bool:
    """Whether this host lets any address be bound (ip_nonlocal_bind): then binds prove nothing."""
    return _bindable(ipaddress.ip_address(_NEVER_LOCAL[version]))


def _bindable(ip: Address) -> bool:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def is_own(ip: Address) -> bool:
    """Whether `ip` is one of this host's addresses (so also every address we listen on)."""
    # Only a local address can be bound: the kernel's own answer, whatever the interfaces.
    return _bindable(ip) and not _nonlocal_bind(ip.version)


class OutboundPolicy:
    """Which destinations may be reached, as the operator configured it."""

    def __init__(self, settings: OutboundSettings) -> None:
        self.allow_private = settings.allow_private
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in settings.allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def _allowed_by_operator(self, ip: Address) -> bool:
        candidates: list[Address] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )

    def host_allowed(self, host: str) -> bool:
        """Whether the operator allowed this name whatever it resolves to."""
        return self.allow_private or host.lower().rstrip(".") in self.hosts

    def address_allowed(self, ip: Address) -> bool:
        """Whether a connection to `ip` may be made."""
        if self.allow_private or self._allowed_by_operator(ip):
            return True
        return is_public(ip) and not is_own(ip)


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, then connects to a checked address only."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or _system_resolver
        self.inner = httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> list[Address]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            answers = await self.resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in answers))
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to `host` unless it is, or resolves to, an address that is not allowed."""
        addresses = await self._addresses(host, port)
        if not self.policy.host_allowed(host):
            # Refuse when any answer is forbidden: a name that mixes a public address with an
            # internal one is no honest destination, and picking the public one invites games.
            refused = [a for a in addresses if not self.policy.address_allowed(a)]
            if refused:
                log.info("outbound.refused", host=host, port=port, address=str(refused[0]))
                raise DestinationRefused(f"{host} is not an allowed destination")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: a Unix socket is a local destination."""
        raise DestinationRefused("Unix sockets are not allowed destinations")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        await self.inner.sleep(seconds)


class _GuardedHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, over a connection pool whose every connect is guarded."""

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx takes no network backend; its pool is the one seam (httpcore's API is public).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def _origin(url: httpx.URL | str) -> tuple[str, str, int | None]:
    url = httpx.URL(url)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), port


class OutboundTransport(httpx.AsyncBaseTransport):
    """Guarded connections for everything; direct ones for marked operator endpoints."""

    def __init__(
        self,
        policy: OutboundPolicy,
        trusted: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.trusted = {_origin(u) for u in trusted if u}
        self.guarded = _GuardedHTTPTransport(GuardedBackend(policy, resolver), limits)
        self.direct = httpx.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Route one request through the guard unless it is a marked, trusted endpoint."""
        marked = request.extensions.get("hangar_operator_endpoint") is True
        if marked and _origin(request.url) in self.trusted:
            return await self.direct.handle_async_request(request)
        return await self.guarded.handle_async_request(request)

    async def aclose(self) -> None:
        """Close both pools."""
        await self.guarded.aclose()
        await self.direct.aclose()


def outbound_client(
    settings: OutboundSettings,
    trusted: Iterable[str] = (),
    *,
    timeout: float = 15.0,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    """The client for every request made on behalf of users; `trusted`: operator URLs."""
    return httpx.AsyncClient(
        transport=OutboundTransport(OutboundPolicy(settings), trusted, resolver=resolver),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        # Proxies from the environment would connect for us, past the guard.
        trust_env=False,
    )
