"""Networked jail sandboxes: routed IPv6 from the host, the nftables firewall, cleanup, recovery."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from hangar.agent.runtimes.base import (
    Firewall,
    InvalidRequest,
    InvalidState,
    NetworkConfig,
    PortRule,
    StartFailed,
)
from hangar.agent.runtimes.jail import JailRuntime, net
from hangar.agent.runtimes.jail.sandbox import Record

from .conftest import MakeSandbox
from .netcheck import (
    NETLINK_PROBE,
    TCP_A,
    UDP_C,
    expect,
    fresh_address,
    host_state,
    pings,
    start_servers,
)

RESTRICTED = Firewall()
ONLY_A = Firewall("restricted", (PortRule("tcp", TCP_A, TCP_A),))
OPEN = Firewall("open")


def ruleset(netns: Path) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "list", "table", "inet", "hangar"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def test_firewall_from_the_host(runtime: JailRuntime, make_sandbox: MakeSandbox) -> None:
    address = fresh_address()
    sid = await make_sandbox(network=NetworkConfig(address, RESTRICTED))
    assert (await runtime.inspect(sid)).ipv6 == address
    servers = await start_servers(lambda argv: runtime.spawn(sid, argv))
    try:
        # default: restricted without rules closes every port; ICMPv6 still passes
        await expect(address, tcp_a=False, tcp_b=False, udp_c=False)
        assert await pings(address)
        await runtime.set_firewall(sid, ONLY_A)
        await expect(address, tcp_a=True, tcp_b=False, udp_c=False)
        await runtime.set_firewall(sid, OPEN)
        await expect(address, tcp_a=True, tcp_b=True, udp_c=True)
        elsewhere = PortRule("tcp", TCP_A, TCP_A + 1, ("2001:db8::/32", "fd00:dead::1"))
        await runtime.set_firewall(sid, Firewall("restricted", (elsewhere,)))
        await expect(address, tcp_a=False, tcp_b=False, udp_c=False)
        udp_and_range = (PortRule("udp", UDP_C, UDP_C), PortRule("tcp", TCP_A, TCP_A + 1))
        await runtime.set_firewall(sid, Firewall("restricted", udp_and_range))
        await expect(address, tcp_a=True, tcp_b=True, udp_c=True)
        # the policy is persisted for a restarted agent
        record = Record.load(runtime.layout(sid).state)
        assert record.policy() == Firewall("restricted", udp_and_range)
    finally:
        await servers.kill()
        await runtime.destroy(sid)


async def test_sandbox_user_cannot_change_the_network(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    address = fresh_address()
    sid = await make_sandbox(network=NetworkConfig(address, ONLY_A))
    netns = runtime.net_names(sid).netns_path
    before = ruleset(netns)
    result = await runtime.exec(sid, ["python3", "-c", NETLINK_PROBE])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [b"1", b"1"]  # EPERM from rtnetlink and nftables
    status = await runtime.exec(sid, ["grep", "CapEff", "/proc/self/status"])
    assert status.stdout.split()[1] == b"0000000000000000"
    assert ruleset(netns) == before
    await runtime.destroy(sid)


async def test_sandbox_without_network_has_loopback_only(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    sid = await make_sandbox()
    result = await runtime.exec(
        sid, ["python3", "-c", "import socket; print([n for _, n in socket.if_nameindex()])"]
    )
    assert result.stdout.strip() == b"['lo']"
    assert (await runtime.inspect(sid)).ipv6 == ""
    assert not runtime.net_names(sid).netns_path.exists()
    with pytest.raises(InvalidState):
        await runtime.set_firewall(sid, OPEN)
    await runtime.destroy(sid)


async def test_invalid_policies_are_refused(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    sid = await make_sandbox(network=NetworkConfig(fresh_address(), RESTRICTED))
    netns = runtime.net_names(sid).netns_path
    before = ruleset(netns)
    bad = [
        Firewall("closed"),
        Firewall("restricted", (PortRule("tcp", 90, 80),)),
        Firewall("restricted", (PortRule("icmp", 80, 80),)),
        Firewall("restricted", (PortRule("tcp", 0, 80),)),
        Firewall("restricted", (PortRule("tcp", 80, 80, ("10.0.0.0/8",)),)),
        Firewall("restricted", (PortRule("tcp", 80, 80, ("::/0; flush ruleset",)),)),
        Firewall("restricted", (PortRule("tcp", 80, 80, ("fe80::1%eth0",)),)),
        Firewall("restricted", tuple(PortRule("tcp", p, p) for p in range(1000, 1129))),
    ]
    for policy in bad:
        with pytest.raises(InvalidRequest):
            await runtime.set_firewall(sid, policy)
    with pytest.raises(InvalidRequest):
        await make_sandbox(network=NetworkConfig(fresh_address(), bad[1]))
    assert ruleset(netns) == before
    await runtime.destroy(sid)


async def test_destroy_leaves_nothing_behind(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    address = fresh_address()
    sid = await make_sandbox(network=NetworkConfig(address, OPEN), disk_mb=64)
    names, layout = runtime.net_names(sid), runtime.layout(sid)
    image = layout.image
    assert host_state(address, names.netns_path, names.host_veth, image) == dict.fromkeys(
        ("netns", "veth", "route", "loop"), True
    )
    await runtime.destroy(sid)
    assert host_state(address, names.netns_path, names.host_veth) == dict.fromkeys(
        ("netns", "veth", "route", "loop"), False
    )
    assert not layout.root.exists()
    assert str(layout.root) not in Path("/proc/mounts").read_text()


async def test_failed_start_cleans_up_and_spares_the_address_owner(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    address = fresh_address()
    owner = await make_sandbox(network=NetworkConfig(address, OPEN))
    servers = await start_servers(lambda argv: runtime.spawn(owner, argv))
    try:
        # the same address again: the host route exists, so the second start must fail
        with pytest.raises(StartFailed):
            await make_sandbox(sandbox_id="t-dup-address", network=NetworkConfig(address, OPEN))
        dup = runtime.net_names("t-dup-address")
        assert not dup.netns_path.exists()
        assert not Path("/sys/class/net", dup.host_veth).exists()
        assert not runtime.layout("t-dup-address").root.exists()
        await expect(address, tcp_a=True, tcp_b=True, udp_c=True)
    finally:
        await servers.kill()
        await runtime.destroy(owner)


async def test_restarted_runtime_readopts_network_and_disk(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    address = fresh_address()
    sid = await make_sandbox(network=NetworkConfig(address, RESTRICTED), disk_mb=64)
    names = runtime.net_names(sid)
    # losing the /run/netns pin (e.g. /run cleaned) must not lose the sandbox's network
    subprocess.run(["ip", "netns", "del", names.netns], check=True)
    again = JailRuntime(runtime.state_root)
    found = {info.sandbox_id: info for info in await again.recover()}
    assert found[sid].ipv6 == address
    assert names.netns_path.exists()
    servers = await start_servers(lambda argv: again.spawn(sid, argv))
    try:
        await again.set_firewall(sid, ONLY_A)
        await expect(address, tcp_a=True, tcp_b=False, udp_c=False)
        written = await again.exec(sid, ["sh", "-c", "head -c 1M /dev/zero > ~/f && df -k /"])
        assert written.exit_code == 0, written.stderr
        assert int(written.stdout.splitlines()[1].split()[1]) < 64 * 1024  # still the image
    finally:
        await servers.kill()
        await again.destroy(sid)
    assert not names.netns_path.exists()


# Connect from inside the sandbox to the host's end of its link; print how it ended.
HOST_PROBE = """
import socket, sys
try:
    socket.create_connection(("fe80::1%eth0", int(sys.argv[1])), timeout=3).close()
    print("connected")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print("error", exc.errno)
"""


async def test_sandbox_cannot_reach_the_host(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, host="::", port=0)
    port = server.sockets[0].getsockname()[1]
    sid = await make_sandbox(network=NetworkConfig(fresh_address(), OPEN))
    try:
        result = await runtime.exec(sid, ["python3", "-c", HOST_PROBE, str(port)])
        assert result.stdout.strip() == b"timeout"  # routed, then dropped by hangar_host
    finally:
        server.close()
        await runtime.destroy(sid)


def test_a_new_sandbox_table_is_created_not_replaced() -> None:
    fresh, replace = net.ruleset(ONLY_A, fresh=True), net.ruleset(ONLY_A)
    assert "delete" not in fresh  # a new namespace has no table; deleting costs ~15 ms
    assert replace.startswith("table inet hangar {}\ndelete table inet hangar\n")
    assert replace.endswith(fresh)


async def test_host_guard_precedes_every_link_and_comes_back(
    runtime: JailRuntime, make_sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(net, "HOST_GUARD", net.HostGuard())  # as in a freshly started agent
    at_link: list[str | None] = []  # the guard table as it was when each link was created
    writes: list[str] = []
    real_run = net._run

    def spy(argv: list[str], stdin: str | None = None) -> None:
        if stdin is not None and "link add" in stdin:
            at_link.append(net.host_guard_listing())
        if argv == ["nft", "-f", "-"]:  # only the root namespace's table is written this way
            writes.append(stdin or "")
        real_run(argv, stdin)

    monkeypatch.setattr(net, "_run", spy)

    def by_hand(*args: str) -> None:
        subprocess.run(["nft", *args], check=True, capture_output=True)

    sids: list[str] = []
    try:
        by_hand("delete", "table", "inet", "hangar_host")  # e.g. a host that just booted
        sids.append(await make_sandbox(network=NetworkConfig(fresh_address(), OPEN)))
        expected = net.host_guard_listing()
        assert expected is not None
        assert 'iifname "hv*" drop' in expected
        assert at_link == [expected]
        sids.append(await make_sandbox(network=NetworkConfig(fresh_address(), OPEN)))
        assert len(writes) == 1  # unchanged: listed, not rewritten
        by_hand("delete", "table", "inet", "hangar_host")
        sids.append(await make_sandbox(network=NetworkConfig(fresh_address(), OPEN)))
        by_hand("flush", "chain", "inet", "hangar_host", "forward")
        sids.append(await make_sandbox(network=NetworkConfig(fresh_address(), OPEN)))
        assert at_link == [expected] * 4
        assert net.host_guard_listing() == expected
    finally:
        net.HostGuard().ensure()  # never leave the host unguarded, even if this failed
        for sid in sids:
            await runtime.destroy(sid)
