"""Host-side probes of a networked sandbox: servers inside it, connections from the host."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hangar.agent.network import DEFAULT_PREFIX
from hangar.agent.runtimes.base import Process, ProcessEvent

# Two TCP servers answering "hi" and one UDP echo server, all on [::]; prints "ready".
SERVERS = """
import socket, sys, threading
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(16)
    return s
def serve_tcp(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"hi")
        c.close()
def serve_udp(u):
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data, peer)
listeners = [tcp(int(p)) for p in sys.argv[1:3]]
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.bind(("::", int(sys.argv[3])))
for s in listeners:
    threading.Thread(target=serve_tcp, args=(s,), daemon=True).start()
threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# Run as the sandbox user: ask the kernel to take eth0 down and to delete an nftables
# table; prints the errno of each refusal (1 = EPERM).
NETLINK_PROBE = """
import socket, struct
def ask(proto, msg_type, payload):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.bind((0, 0))
    s.send(struct.pack("=LHHLL", 16 + len(payload), msg_type, 0x1 | 0x4, 1, 0) + payload)
    reply = s.recv(65536)
    assert struct.unpack("=LHHLL", reply[:16])[1] == 2  # NLMSG_ERROR
    return -struct.unpack("=i", reply[16:20])[0]
index = socket.if_nametoindex("eth0")
print(ask(socket.NETLINK_ROUTE, 16, struct.pack("=BxHiII", 0, 0, index, 0, 1)))
print(ask(12, (10 << 8) | 2, struct.pack("=BBH", 1, 0, 0)))
"""

TCP_A, TCP_B, UDP_C = 8001, 8002, 9001


def fresh_address() -> str:
    """A random address in the agent's default prefix (tests create their own netns)."""
    net = ipaddress.IPv6Network(DEFAULT_PREFIX)
    return str(ipaddress.IPv6Address(int(net.network_address) + 2 + secrets.randbelow(1 << 62)))


@dataclass
class Servers:
    """The servers' process; its event stream is kept open (closing it kills the process)."""

    proc: Process
    events: AsyncIterator[ProcessEvent]

    async def kill(self) -> None:
        """Stop the servers."""
        await self.proc.kill()


async def start_servers(spawn: Callable[..., Awaitable[Process]]) -> Servers:
    """Start the servers inside a sandbox and wait until they listen."""
    proc = await spawn(["python3", "-u", "-c", SERVERS, str(TCP_A), str(TCP_B), str(UDP_C)])
    events = proc.events()
    event = await asyncio.wait_for(anext(events), 30)
    assert (event.kind, event.data[:5]) == ("stdout", b"ready"), event
    return Servers(proc, events)


async def tcp_open(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a connection from the host reaches our server (a dropped SYN times out)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        return await asyncio.wait_for(reader.read(2), timeout) == b"hi"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def _udp_echo(address: str, port: int, timeout: float) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(b"ping", (address, port))
            return s.recv(64) == b"ping"
        except OSError:
            return False


async def udp_open(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a datagram from the host reaches the echo server and comes back."""
    return await asyncio.to_thread(_udp_echo, address, port, timeout)


def _echo(address: str, timeout: float) -> bool:
    # The kernel fills in ICMPv6 checksums on raw sockets; replies to others are skipped.
    ident = secrets.randbelow(1 << 16)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.settimeout(timeout)
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"hangar", (address, 0))
        try:
            while True:
                data, _ = s.recvfrom(1024)
                if data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
                    return True
        except TimeoutError:
            return False


async def pings(address: str, timeout: float = 5.0) -> bool:
    """Whether the sandbox answers an ICMPv6 echo request from the host (needs root)."""
    return await asyncio.to_thread(_echo, address, timeout)


async def expect(address: str, *, tcp_a: bool, tcp_b: bool, udp_c: bool) -> None:
    """Assert what the host reaches: open ports may take a few tries, closed ones get one."""

    async def probe(check: Callable[[], Awaitable[bool]], want: bool) -> bool:
        for _ in range(10 if want else 1):  # a loaded machine may lose a SYN; a drop is a drop
            if await check():
                return True
        return False

    got = await asyncio.gather(
        probe(lambda: tcp_open(address, TCP_A), tcp_a),
        probe(lambda: tcp_open(address, TCP_B), tcp_b),
        probe(lambda: udp_open(address, UDP_C), udp_c),
    )
    assert tuple(got) == (tcp_a, tcp_b, udp_c), f"reachable (tcp A, tcp B, udp C): {got}"


def host_state(address: str, netns: Path, veth: str, image: Path | None = None) -> dict[str, bool]:
    """Which of a sandbox's host-side network/disk objects exist right now."""
    route = subprocess.run(
        ["ip", "-6", "route", "show", f"{address}/128"], capture_output=True, text=True, check=True
    ).stdout.strip()
    loops = ""
    if image is not None and image.exists():
        loops = subprocess.run(
            ["losetup", "-j", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()
    return {
        "netns": netns.exists(),
        "veth": Path("/sys/class/net", veth).exists(),
        "route": bool(route),
        "loop": bool(loops),
    }
