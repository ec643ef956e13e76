"""The agent API over a real jail runtime: networked, disk-limited sandboxes and PUT firewall."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from hangar.agent.api import build_agent_app
from hangar.agent.network import DEFAULT_PREFIX
from hangar.agent.runtimes.jail import JailRuntime
from hangar.agent.service import Agent
from hangar.agentproto.models import Template, TemplateBuild

from .netcheck import TCP_A, expect, host_state, start_servers


class OneTemplate:
    """Every template name is the cached `minimal` rootfs."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs

    async def ensure(self, name: str) -> Path:
        return self.rootfs

    def building(self) -> list[TemplateBuild]:
        return []

    def allows_nested_userns(self, name: str) -> bool:
        return False

    def snapshot_dest(self, name: str) -> Path:
        raise NotImplementedError

    def register_snapshot(self, name: str) -> None:
        raise NotImplementedError

    def list(self) -> list[Template]:
        return []

    def delete(self, name: str) -> None:
        return None


@pytest_asyncio.fixture
async def agent(runtime: JailRuntime, minimal_rootfs: Path, tmp_path: Path) -> AsyncIterator[Agent]:
    yield Agent(runtime, OneTemplate(minimal_rootfs), tmp_path / "agent")


def client_for(agent: Agent) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_agent_app(agent))
    return httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=60)


def create_body(sandbox_id: str, **extra: Any) -> dict[str, Any]:
    return {"sandbox_id": sandbox_id, "template": "minimal", "vcpus": 1, "memory_mb": 256, **extra}


async def test_put_firewall_over_the_agent_api(
    agent: Agent, runtime: JailRuntime, tmp_path: Path
) -> None:
    async with client_for(agent) as http:
        created = await http.post(
            "/v1/sandboxes", json=create_body("t-api-net", network={}, disk_mb=64)
        )
        assert created.status_code == 201, created.text
        box = created.json()
        address = box["ipv6"]
        assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network(DEFAULT_PREFIX)
        assert box["firewall"] == {"mode": "restricted", "ingress": []}
        assert box["disk_mb"] == 64
        servers = await start_servers(lambda argv: runtime.spawn("t-api-net", argv))
        try:
            await expect(address, tcp_a=False, tcp_b=False, udp_c=False)
            rule = {"protocol": "tcp", "port_start": TCP_A, "port_end": TCP_A}
            put = await http.put(
                "/v1/sandboxes/t-api-net/firewall", json={"mode": "restricted", "ingress": [rule]}
            )
            assert put.status_code == 200, put.text
            assert put.json()["firewall"]["ingress"] == [{**rule, "source_cidrs": ["::/0"]}]
            await expect(address, tcp_a=True, tcp_b=False, udp_c=False)

            for bad in (
                {"mode": "restricted", "ingress": [{**rule, "port_start": TCP_A + 1}]},
                {"mode": "restricted", "ingress": [{**rule, "source_cidrs": ["10.0.0.0/8"]}]},
                {"mode": "restricted", "ingress": [{**rule, "protocol": "icmp"}]},
                {"mode": "closed"},
            ):
                refused = await http.put("/v1/sandboxes/t-api-net/firewall", json=bad)
                assert refused.status_code == 400, refused.text
                assert refused.json()["code"] == "invalid_request"
            await expect(address, tcp_a=True, tcp_b=False, udp_c=False)  # unchanged
            missing = await http.put("/v1/sandboxes/nope/firewall", json={"mode": "open"})
            assert missing.status_code == 404

            # a restarted agent reports the policy and address it had
            again = Agent(runtime, agent.templates, tmp_path / "agent")
            await again.start()
            try:
                async with client_for(again) as http2:
                    got = (await http2.get("/v1/sandboxes/t-api-net")).json()
                    assert got["ipv6"] == address
                    assert got["firewall"]["ingress"][0]["port_start"] == TCP_A
                    opened = await http2.put(
                        "/v1/sandboxes/t-api-net/firewall", json={"mode": "open"}
                    )
                    assert opened.json()["firewall"] == {"mode": "open", "ingress": []}
                    await expect(address, tcp_a=True, tcp_b=True, udp_c=True)
            finally:
                await again.stop()
        finally:
            await servers.kill()
        names = runtime.net_names("t-api-net")
        image = runtime.layout("t-api-net").image
        assert (await http.delete("/v1/sandboxes/t-api-net")).status_code == 204
        assert not any(host_state(address, names.netns_path, names.host_veth, image).values())


async def test_firewall_needs_a_networked_sandbox(agent: Agent) -> None:
    async with client_for(agent) as http:
        created = await http.post("/v1/sandboxes", json=create_body("t-api-plain"))
        assert created.status_code == 201, created.text
        assert created.json()["ipv6"] == ""
        assert created.json()["firewall"] is None
        put = await http.put("/v1/sandboxes/t-api-plain/firewall", json={"mode": "open"})
        assert put.status_code == 409
        assert put.json()["code"] == "invalid_state"
        bad = create_body(
            "t-api-bad",
            network={
                "firewall": {"ingress": [{"protocol": "tcp", "port_start": 9, "port_end": 1}]}
            },
        )
        refused = await http.post("/v1/sandboxes", json=bad)
        assert refused.status_code == 400
        assert refused.json()["code"] == "invalid_request"
        assert (await http.get("/v1/sandboxes/t-api-bad")).status_code == 404
        assert (await http.delete("/v1/sandboxes/t-api-plain")).status_code == 204
