"""Pure rules behind FastVM: firewall policies, machine types and quota arithmetic."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.agent.network import to_firewall
from hangar.agent.runtimes import firewall as agent_fw
from hangar.agentproto import limits
from hangar.core.capsules.machine_types import BASE_DISK_GB, MACHINE_TYPES, machine_type
from hangar.core.capsules.rules import check_disk_gb, check_name
from hangar.core.compute import firewall as fw
from hangar.core.compute.firewall import FirewallPolicy, FirewallRule
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidInput
from hangar.core.quotas.rules import QuotaExceeded, QuotaValues, excess

ports = st.integers(min_value=1, max_value=65535)
v6_networks = st.builds(
    lambda addr, plen: f"{ipaddress.IPv6Address(addr)}/{plen}",
    st.integers(min_value=0, max_value=2**128 - 1),
    st.integers(min_value=0, max_value=128),
)
rules = st.builds(
    lambda proto, a, b, cidrs, desc: FirewallRule(
        proto, a if b is None else min(a, b), None if b is None else max(a, b), cidrs, desc
    ),
    st.sampled_from(["tcp", "udp"]),
    ports,
    st.one_of(st.none(), ports),
    st.one_of(st.none(), st.lists(v6_networks, min_size=1, max_size=4).map(tuple)),
    st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)),
)
policies = st.builds(
    FirewallPolicy,
    st.sampled_from(["open", "restricted"]),
    st.lists(rules, max_size=8).map(tuple),
)


@given(policies)
def test_valid_policies_normalise_stably(policy: FirewallPolicy) -> None:
    clean = fw.validated(policy)
    assert fw.validated(clean) == clean
    assert fw.from_json(fw.to_json(clean)) == clean
    for before, after in zip(policy.ingress, clean.ingress, strict=True):
        assert after.port_end == (before.port_end or before.port_start)
        assert after.port_start <= after.port_end
        assert after.source_cidrs
        for cidr in after.source_cidrs:
            net = ipaddress.ip_network(cidr)
            assert isinstance(net, ipaddress.IPv6Network)
            assert str(net) == cidr
        if before.source_cidrs is None:
            assert after.source_cidrs == ("::/0",)
    wire = fw.to_wire(clean)
    assert wire.mode == clean.mode
    assert [(r.protocol, r.port_start, r.port_end) for r in wire.ingress] == [
        (r.protocol, r.port_start, r.port_end) for r in clean.ingress
    ]


@given(policies, st.one_of(st.none(), st.sampled_from(["open", "restricted"])), st.booleans())
def test_patch_replaces_only_the_fields_given(
    current: FirewallPolicy, mode: str | None, with_ingress: bool
) -> None:
    new_rules = (FirewallRule("udp", 53),)
    patched = fw.merged(current, mode, new_rules if with_ingress else None)
    assert patched.mode == (mode or current.mode)
    expected = fw.validated(FirewallPolicy(ingress=new_rules if with_ingress else current.ingress))
    assert patched.ingress == expected.ingress


@pytest.mark.parametrize(
    "policy",
    [
        FirewallPolicy("closed"),
        FirewallPolicy(ingress=(FirewallRule("icmp", 1),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 0),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 1, 65536),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 10, 9),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=("10.0.0.0/8",)),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=("nonsense",)),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=()),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, description="x" * 257),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, description="line\nbreak"),)),
        FirewallPolicy(ingress=tuple(FirewallRule("tcp", p) for p in range(1, 66))),
        # Scoped addresses name a host interface: the agent refuses them, so must the core.
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=("fe80::1%eth0/128",)),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=("fe80::1%1",)),)),
        FirewallPolicy(ingress=(FirewallRule("tcp", 80, source_cidrs=(" " * 60 + "::1/128",)),)),
    ],
)
def test_invalid_policies_are_refused(policy: FirewallPolicy) -> None:
    with pytest.raises(InvalidInput):
        fw.validated(policy)


@given(policies)
def test_what_the_core_accepts_the_agent_accepts(policy: FirewallPolicy) -> None:
    # A queued VM's policy is checked by the core at once and by the agent only when it starts.
    to_firewall(fw.to_wire(fw.validated(policy)))


def test_core_firewall_limits_are_within_the_agents() -> None:
    assert fw.MAX_RULES == agent_fw.MAX_RULES == limits.FIREWALL_MAX_RULES
    assert fw.MAX_CIDRS_PER_RULE == agent_fw.MAX_SOURCES == limits.FIREWALL_MAX_SOURCES
    assert fw.MAX_CIDR_CHARS == agent_fw.MAX_CIDR_CHARS == limits.FIREWALL_MAX_CIDR_CHARS


def test_cidrs_are_normalised_and_host_bits_allowed() -> None:
    rule = FirewallRule("tcp", 22, source_cidrs=("2001:DB8::1/32", "2001:db8::/32", "::1"))
    [clean] = fw.validated(FirewallPolicy(ingress=(rule,))).ingress
    assert clean.source_cidrs == ("2001:db8::/32", "::1/128")
    assert FirewallPolicy("restricted", ()) == fw.DEFAULT_POLICY


def test_machine_types() -> None:
    assert {n: (t.vcpus, t.memory_mb) for n, t in MACHINE_TYPES.items()} == {
        "c1m2": (1, 2048),
        "c2m4": (2, 4096),
        "c4m8": (4, 8192),
        "c8m16": (8, 16384),
    }
    assert machine_type("c4m8").memory_mb == 8192
    assert BASE_DISK_GB == 10
    with pytest.raises(InvalidInput):
        machine_type("c16m32")
    settings = CapsuleSettings()
    for t in MACHINE_TYPES.values():  # every type fits the default capsule bounds
        assert settings.min_vcpus <= t.vcpus <= settings.max_vcpus
        assert settings.min_memory_mb <= t.memory_mb <= settings.max_memory_mb


def test_names_and_disks() -> None:
    assert check_name(None) is None
    assert check_name("  my vm  ") == "my vm"
    for bad in ("", "   ", "x" * 65, "tab\there"):
        with pytest.raises(InvalidInput):
            check_name(bad)
    settings = CapsuleSettings(max_disk_gb=100)
    assert check_disk_gb(settings, None, 10) is None
    assert check_disk_gb(settings, 100, 10) == 100
    for bad in (9, 101):
        with pytest.raises(InvalidInput):
            check_disk_gb(settings, bad, 10)


values = st.builds(QuotaValues, *(st.integers(min_value=0, max_value=10_000) for _ in range(4)))


@given(values, values, values)
def test_quota_excess_matches_per_resource_arithmetic(
    limits: QuotaValues, usage: QuotaValues, asked: QuotaValues
) -> None:
    reason = excess(limits, usage, asked)
    over = [
        name
        for name in ("vcpu", "memory_mib", "disk_gib", "snapshot_count")
        if getattr(asked, name) > 0
        and getattr(usage, name) + getattr(asked, name) > getattr(limits, name)
    ]
    assert (reason is None) == (not over)


def test_quota_message_names_resource_request_and_remaining() -> None:
    limits = QuotaValues(8, 16384, 100, 5)
    usage = QuotaValues(6, 1024, 100, 5)
    assert excess(limits, usage, QuotaValues(2, 1024, 0, 0)) is None
    assert (
        excess(limits, usage, QuotaValues(4, 0, 0, 0))
        == "quota exceeded for vCPUs: requested 4, 2 of 8 remaining"
    )
    assert excess(limits, usage, QuotaValues(0, 0, 1, 0)) == (
        "quota exceeded for disk (GiB): requested 1, 0 of 100 remaining"
    )
    # Usage already over a lowered limit reports nothing remaining, not a negative number.
    assert "0 of 2 remaining" in (excess(QuotaValues(2), QuotaValues(5), QuotaValues(1)) or "")
    assert QuotaExceeded("x").code == "quota_exceeded"
