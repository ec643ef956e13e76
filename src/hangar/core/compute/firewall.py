"""IPv6 ingress firewall policies of networked capsules: validation, merging and storage."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, replace
from typing import Any

from hangar.agentproto import limits
from hangar.agentproto import models as wire
from hangar.core.errors import InvalidInput

MODES = ("open", "restricted")
PROTOCOLS = ("tcp", "udp")
# The agent's own limits (defined once, in the agent protocol): a policy the core accepts is
# never refused by the host when a queued VM finally starts.
MAX_RULES = limits.FIREWALL_MAX_RULES
MAX_CIDRS_PER_RULE = limits.FIREWALL_MAX_SOURCES
MAX_CIDR_CHARS = limits.FIREWALL_MAX_CIDR_CHARS
MAX_DESCRIPTION = 256
ANY_SOURCE = "::/0"


@dataclass(frozen=True)
class FirewallRule:
    """Allow inbound tcp or udp to a port range from some IPv6 source prefixes."""

    protocol: str
    port_start: int
    port_end: int | None = None
    source_cidrs: tuple[str, ...] | None = None
    description: str | None = None


@dataclass(frozen=True)
class FirewallPolicy:
    """`open` allows all inbound IPv6; `restricted` only `ingress` (plus essential ICMPv6)."""

    mode: str = "restricted"
    ingress: tuple[FirewallRule, ...] = ()


DEFAULT_POLICY = FirewallPolicy()


def _port(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{field} must be an integer between 1 and 65535")
    return value


def _cidr(text: str) -> str:
    # The agent refuses scoped addresses ("fe80::1%eth0": a host interface) and long texts.
    if not isinstance(text, str) or len(text) > MAX_CIDR_CHARS or "%" in text:
        raise InvalidInput(f"source CIDR {str(text)[:MAX_CIDR_CHARS]!r} is not an IPv6 network")
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"source CIDR {text!r} is not an IP network") from exc
    if not isinstance(network, ipaddress.IPv6Network):
        raise InvalidInput(f"source CIDR {text!r} is not an IPv6 network")
    return str(network)


def _rule(rule: FirewallRule, index: int) -> FirewallRule:
    where = f"ingress[{index}]"
    if rule.protocol not in PROTOCOLS:
        raise InvalidInput(f"{where}.protocol must be tcp or udp")
    start = _port(rule.port_start, f"{where}.port_start")
    end = start if rule.port_end is None else _port(rule.port_end, f"{where}.port_end")
    if start > end:
        raise InvalidInput(f"{where}: port_start must not be greater than port_end")
    given = (ANY_SOURCE,) if rule.source_cidrs is None else rule.source_cidrs
    if not given:
        raise InvalidInput(f"{where}.source_cidrs must not be empty (omit it to allow ::/0)")
    if len(given) > MAX_CIDRS_PER_RULE:
        raise InvalidInput(f"{where}.source_cidrs allows at most {MAX_CIDRS_PER_RULE} entries")
    # Normalised and de-duplicated, first occurrence kept, so equal policies compare equal.
    cidrs = tuple(dict.fromkeys(_cidr(c) for c in given))
    description = rule.description
    if description is not None and (
        len(description) > MAX_DESCRIPTION or not description.isprintable()
    ):
        raise InvalidInput(
            f"{where}.description must be at most {MAX_DESCRIPTION} printable characters"
        )
    return FirewallRule(rule.protocol, start, end, cidrs, description)


def validated(policy: FirewallPolicy) -> FirewallPolicy:
    """The policy with defaults filled in and every field checked, else InvalidInput."""
    if policy.mode not in MODES:
        raise InvalidInput("firewall mode must be open or restricted")
    if len(policy.ingress) > MAX_RULES:
        raise InvalidInput(f"a firewall policy has at most {MAX_RULES} ingress rules")
    return FirewallPolicy(policy.mode, tuple(_rule(r, i) for i, r in enumerate(policy.ingress)))


def merged(
    current: FirewallPolicy, mode: str | None, ingress: tuple[FirewallRule, ...] | None
) -> FirewallPolicy:
    """A partial update: each field given replaces the current one; the result is validated."""
    policy = current
    if mode is not None:
        policy = replace(policy, mode=mode)
    if ingress is not None:
        policy = replace(policy, ingress=tuple(ingress))
    return validated(policy)


def to_json(policy: FirewallPolicy) -> str:
    """The policy as the JSON text stored in a row."""
    return json.dumps(
        {
            "mode": policy.mode,
            "ingress": [
                {
                    "protocol": r.protocol,
                    "port_start": r.port_start,
                    "port_end": r.port_end,
                    "source_cidrs": list(r.source_cidrs) if r.source_cidrs is not None else None,
                    "description": r.description,
                }
                for r in policy.ingress
            ],
        },
        separators=(",", ":"),
    )


def from_json(text: str) -> FirewallPolicy:
    """A policy read back from a row."""
    data: dict[str, Any] = json.loads(text)
    return FirewallPolicy(
        mode=data["mode"],
        ingress=tuple(
            FirewallRule(
                protocol=r["protocol"],
                port_start=r["port_start"],
                port_end=r.get("port_end"),
                source_cidrs=tuple(r["source_cidrs"])
                if r.get("source_cidrs") is not None
                else None,
                description=r.get("description"),
            )
            for r in data.get("ingress", [])
        ),
    )


def to_wire(policy: FirewallPolicy) -> wire.FirewallPolicy:
    """The policy in the agent protocol's shape (validated first)."""
    policy = validated(policy)
    return wire.FirewallPolicy(
        mode=policy.mode,
        ingress=[
            wire.FirewallRule(
                protocol=r.protocol,
                port_start=r.port_start,
                port_end=r.port_end if r.port_end is not None else r.port_start,
                source_cidrs=list(r.source_cidrs or (ANY_SOURCE,)),
            )
            for r in policy.ingress
        ],
    )
