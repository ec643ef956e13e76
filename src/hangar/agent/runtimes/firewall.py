"""Checks on inbound firewall policies, shared by the agent and every runtime that enforces them.

A policy ends up in a ruleset handed to the kernel, so everything in it is validated and
normalised here (ports as ints, sources as parsed IPv6 networks) before anything renders it.
"""

from __future__ import annotations

import ipaddress

from hangar.agent.runtimes.base import Firewall, InvalidRequest, PortRule
from hangar.agentproto import limits

MODES = ("open", "restricted")
PROTOCOLS = ("tcp", "udp")
# The same limits the control plane enforces (defined once, in the agent protocol).
MAX_RULES = limits.FIREWALL_MAX_RULES
MAX_SOURCES = limits.FIREWALL_MAX_SOURCES  # per rule
MAX_CIDR_CHARS = limits.FIREWALL_MAX_CIDR_CHARS


def check(firewall: Firewall) -> None:
    """Raise InvalidRequest unless every part of the policy is well formed and bounded."""
    if firewall.mode not in MODES:
        raise InvalidRequest(f"firewall mode must be one of {', '.join(MODES)}")
    if len(firewall.ingress) > MAX_RULES:
        raise InvalidRequest(f"at most {MAX_RULES} firewall rules are allowed")
    for index, rule in enumerate(firewall.ingress):
        where = f"firewall rule {index}"
        if rule.protocol not in PROTOCOLS:
            raise InvalidRequest(f"{where}: protocol must be tcp or udp")
        for port in (rule.port_start, rule.port_end):
            if type(port) is not int or not 1 <= port <= 65535:
                raise InvalidRequest(f"{where}: ports must be integers in 1..65535")
        if rule.port_start > rule.port_end:
            raise InvalidRequest(f"{where}: port_start must not exceed port_end")
        if len(rule.source_cidrs) > MAX_SOURCES:
            raise InvalidRequest(f"{where}: at most {MAX_SOURCES} source CIDRs are allowed")
        sources(rule, where)


def sources(rule: PortRule, where: str = "firewall rule") -> list[ipaddress.IPv6Network] | None:
    """The rule's sources, parsed and merged; None when they include everything (::/0)."""
    nets: list[ipaddress.IPv6Network] = []
    for cidr in rule.source_cidrs:
        # Scoped addresses ("fe80::1%eth0") name a host interface: meaningless in a sandbox.
        if not isinstance(cidr, str) or len(cidr) > MAX_CIDR_CHARS or "%" in cidr:
            raise InvalidRequest(f"{where}: invalid IPv6 CIDR {str(cidr)[:MAX_CIDR_CHARS]!r}")
        try:
            net = ipaddress.IPv6Network(cidr.strip(), strict=False)
        except ValueError:
            raise InvalidRequest(f"{where}: invalid IPv6 CIDR {cidr!r}") from None
        if net.prefixlen == 0:
            return None
        nets.append(net)
    return list(ipaddress.collapse_addresses(nets))
