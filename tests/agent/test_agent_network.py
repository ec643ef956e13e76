"""Address allocation, policy checks, nft rendering; the agent API over the fake runtime."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest

from hangar.agent.api import build_agent_app
from hangar.agent.network import AddressesExhausted, AddressPool, to_firewall
from hangar.agent.runtimes.base import Firewall, InvalidRequest, PortRule
from hangar.agent.runtimes.fake import FakeRuntime
from hangar.agent.runtimes.jail.net import ruleset
from hangar.agent.service import Agent
from hangar.agent.templates_dir import DirTemplates
from hangar.agentproto.models import FirewallPolicy, FirewallRule


def test_addresses_come_from_the_prefix_and_never_repeat() -> None:
    pool = AddressPool("fd00:1:2:3::/64")
    used: set[str] = set()
    for _ in range(200):
        address = pool.allocate(used)
        assert ipaddress.IPv6Address(address) in pool.network
        assert int(ipaddress.IPv6Address(address)) - int(pool.network.network_address) >= 2
        assert address not in used
        used.add(address)
    small = AddressPool("fd00::/126")
    assert small.allocate([]) == "fd00::2"
    assert small.allocate(["fd00::2"]) == "fd00::3"
    with pytest.raises(AddressesExhausted):
        small.allocate(["fd00::2", "fd00::3"])


@pytest.mark.parametrize(
    "prefix", ["10.0.0.0/8", "fe80::/64", "ff02::/16", "fd00::1/64", "fd00::/127", "nonsense"]
)
def test_unusable_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        AddressPool(prefix)


def test_policies_are_validated() -> None:
    ok = to_firewall(
        FirewallPolicy(ingress=[FirewallRule(protocol="udp", port_start=53, port_end=53)])
    )
    assert ok == Firewall("restricted", (PortRule("udp", 53, 53, ("::/0",)),))
    for bad in (
        FirewallPolicy(ingress=[FirewallRule(protocol="tcp", port_start=2, port_end=1)]),
        FirewallPolicy(
            ingress=[FirewallRule(protocol="tcp", port_start=1, port_end=1, source_cidrs=["x"])]
        ),
        FirewallPolicy(
            ingress=[FirewallRule(protocol="tcp", port_start=p, port_end=p) for p in range(1, 130)]
        ),
    ):
        with pytest.raises(InvalidRequest):
            to_firewall(bad)


def test_ruleset_rendering() -> None:
    opened = ruleset(Firewall("open"))
    assert "policy drop;" in opened
    assert "\n    accept\n" in opened
    assert opened.startswith("table inet hangar {}\ndelete table inet hangar\n")
    rules = (
        PortRule("tcp", 80, 80),
        PortRule("udp", 5000, 5010, ("2001:db8::/48", "2001:db8::/32", "2001:db8:1::5")),
        PortRule("tcp", 22, 22, ()),
    )
    text = ruleset(Firewall("restricted", rules))
    assert "meta nfproto ipv6 tcp dport 80 accept" in text
    assert "ip6 saddr { 2001:db8::/32 } udp dport 5000-5010 accept" in text  # merged
    assert "dport 22" not in text  # no source may use it
    assert "\n    accept\n" not in text
    assert "nd-neighbor-solicit" in text
    assert "echo-request" in text


async def test_agent_allocates_and_records_networks(tmp_path: Path) -> None:
    fake = FakeRuntime(tmp_path / "boxes")
    fake.root.mkdir()
    templates = DirTemplates(tmp_path / "templates")
    agent = Agent(fake, templates, tmp_path / "agent", ipv6_prefix="fd00:aa::/64")
    app = build_agent_app(agent)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://agent"
    ) as http:
        body = {"template": "minimal", "vcpus": 1, "memory_mb": 64}
        a = await http.post("/v1/sandboxes", json={**body, "sandbox_id": "a", "network": {}})
        b = await http.post(
            "/v1/sandboxes", json={**body, "sandbox_id": "b", "network": {}, "disk_mb": 128}
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["ipv6"] != b.json()["ipv6"]
        assert ipaddress.IPv6Address(b.json()["ipv6"]) in ipaddress.IPv6Network("fd00:aa::/64")
        spec = fake.specs["b"]
        assert spec.disk_mb == 128
        assert spec.network is not None
        assert spec.network.ipv6 == b.json()["ipv6"]
        small = await http.post("/v1/sandboxes", json={**body, "sandbox_id": "c", "disk_mb": 8})
        assert small.status_code == 400
        assert small.json()["code"] == "invalid_request"
        policy = {
            "mode": "restricted",
            "ingress": [{"protocol": "tcp", "port_start": 443, "port_end": 443}],
        }
        put = await http.put("/v1/sandboxes/a/firewall", json=policy)
        assert put.status_code == 200
        assert fake.firewalls["a"] == Firewall("restricted", (PortRule("tcp", 443, 443),))
    again = Agent(fake, templates, tmp_path / "agent", ipv6_prefix="fd00:aa::/64")
    await again.start()
    try:
        view = again.get("a")
        assert view.ipv6 == a.json()["ipv6"]
        assert view.firewall is not None
        assert view.firewall.ingress[0].port_start == 443
        assert again.get("b").disk_mb == 128
    finally:
        await again.stop()
