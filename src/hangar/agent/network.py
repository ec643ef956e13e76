"""The agent's side of sandbox networking: address allocation and firewall policy conversion."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Collection

from hangar.agent.runtimes import firewall as policies
from hangar.agent.runtimes.base import Firewall, InvalidRequest, PortRule, RuntimeError_
from hangar.agentproto.models import FirewallPolicy

DEFAULT_PREFIX = "fd68:616e:6761::/64"  # a ULA: "hangar" in its global ID
RANDOM_TRIES = 64


class AddressesExhausted(RuntimeError_):
    """Every address of the agent's prefix is in use."""

    code = "addresses_exhausted"


def parse_prefix(prefix: str) -> ipaddress.IPv6Network:
    """The agent's sandbox prefix; ValueError unless it is a usable unicast IPv6 network."""
    net = ipaddress.IPv6Network(prefix, strict=True)
    if net.prefixlen > 126 or net.is_link_local or net.is_multicast or net.is_loopback:
        raise ValueError(f"{prefix} cannot hold sandbox addresses (need unicast, /126 or wider)")
    return net


class AddressPool:
    """Hands out sandbox addresses from one prefix, never one already in use.

    Addresses are random within wide prefixes, so agents sharing a prefix on one host
    (or a restarted agent that lost track of one) practically never collide; the runtime's
    route is added, never replaced, so a collision still fails loudly instead of hijacking.
    Index 0 (subnet-router anycast) and 1 (conventionally a gateway) are never used.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.network = parse_prefix(prefix)

    def allocate(self, used: Collection[str]) -> str:
        """A free address of the prefix, as a compressed string."""
        taken = {ipaddress.IPv6Address(a) for a in used if a}
        base, size = int(self.network.network_address), self.network.num_addresses
        if size > 1 << 16:
            for _ in range(RANDOM_TRIES):
                candidate = ipaddress.IPv6Address(base + 2 + secrets.randbelow(size - 2))
                if candidate not in taken:
                    return str(candidate)
        else:
            for index in range(2, size):
                candidate = ipaddress.IPv6Address(base + index)
                if candidate not in taken:
                    return str(candidate)
        raise AddressesExhausted(f"no free address left in {self.network}")


def to_firewall(policy: FirewallPolicy) -> Firewall:
    """The runtime's policy for a wire policy; InvalidRequest when it is malformed."""
    firewall = Firewall(
        mode=policy.mode,
        ingress=tuple(
            PortRule(
                protocol=rule.protocol,
                port_start=rule.port_start,
                port_end=rule.port_end,
                source_cidrs=tuple(rule.source_cidrs),
            )
            for rule in policy.ingress[: policies.MAX_RULES + 1]
        ),
    )
    if len(policy.ingress) > policies.MAX_RULES:
        raise InvalidRequest(f"at most {policies.MAX_RULES} firewall rules are allowed")
    policies.check(firewall)
    return firewall
