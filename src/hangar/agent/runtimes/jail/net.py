"""A networked jail's plumbing: its own network namespace, a veth pair, a route and nftables.

Per sandbox: a persistent named netns (`ip netns add hangar-<short>`, pinned under
/run/netns so it outlives every process and the agent), a veth pair whose host end
(`hv<short>`) stays in the root namespace and whose other end is the sandbox's `eth0`,
the sandbox's IPv6 address on `eth0` (/128), a host route to it through the veth, and a
default route inside via the host end. Both ends get fixed link-local addresses (fe80::1
on the host, fe80::2 inside) with DAD off, so the link works the moment it is up.

The inbound firewall is an nftables table `inet hangar` inside the sandbox's namespace:
its processes run as uid 1000 without CAP_NET_ADMIN, so they cannot change it. ICMPv6
echo-request is accepted in every mode (RFC 4890 recommends it; it opens no port).

The host is guarded too: a table `inet hangar_host` in the root namespace lets traffic
*from* any sandbox link (`hv*`) reach the host or be forwarded only as part of a connection
the other side opened (plus neighbour discovery), so a sandbox can neither reach the host's
own services nor get egress through a host that forwards IPv6. It is shared by every agent
on the host and never removed. Replacing a table costs an nftables commit that waits for an
RCU grace period (~15 ms), so an agent writes it once, then before each new link only lists it
(~2 ms) and rewrites it if it went missing or changed: no sandbox link exists without it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from hangar.agent.runtimes.base import Firewall
from hangar.agent.runtimes.firewall import check, sources

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
HOST_LL = "fe80::1"
GUEST_LL = "fe80::2"
TABLE = "inet hangar"
HOST_TABLE = "inet hangar_host"
VETH_PREFIX = "hv"
ND_ONLY = (
    "nd-router-solicit",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "packet-too-big",
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
)
ICMPV6_ACCEPTED = (
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld-listener-query",
    "mld-listener-report",
    "mld-listener-done",
    "mld2-listener-report",
    "echo-request",
)


@dataclass(frozen=True)
class Names:
    """The kernel objects of one sandbox's network."""

    netns: str
    host_veth: str

    @property
    def netns_path(self) -> Path:
        """The bind mount that pins the namespace."""
        return NETNS_DIR / self.netns


def names_for(state_root: Path, sandbox_id: str) -> Names:
    """Stable names (interface names are at most 15 bytes), distinct per agent state root."""
    digest = hashlib.sha256(f"{state_root.absolute()}\0{sandbox_id}".encode()).hexdigest()[:11]
    return Names(f"hangar-{digest}", f"{VETH_PREFIX}{digest}")


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(  # noqa: S603 - argv list, no shell; values validated or ours
        argv, input=stdin.encode() if stdin is not None else None, capture_output=True, check=False
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        raise OSError(f"{' '.join(argv[:4])}: {detail}")


def setup(names: Names, ipv6: str, firewall: Firewall) -> None:
    """Create the namespace, link, addresses, firewall and routes (firewall before routes)."""
    address = ipaddress.IPv6Address(ipv6)  # never anything else on an `ip` command line
    check(firewall)
    HOST_GUARD.ensure()  # before the link exists, so there is no window without it
    veth = names.host_veth
    # One `ip` per namespace. A batch stops at its first failing line.
    host = (
        f"netns add {names.netns}\n"
        f"link add {veth} type veth peer name eth0 netns {names.netns}\n"
        f"link set dev {veth} addrgenmode none\n"
        f"addr add {HOST_LL}/64 dev {veth} nodad\n"
        f"link set dev {veth} up\n"
    )
    _run(["ip", "-batch", "-"], host)
    # After `up` is early enough: only the sandbox could send RAs or redirects on this link,
    # and none of its processes exists before setup returns.
    for knob in ("accept_ra", "accept_redirects"):  # the sandbox must not steer the host
        (Path("/proc/sys/net/ipv6/conf") / veth / knob).write_text("0")
    guest = (
        "link set dev lo up\n"
        "link set dev eth0 addrgenmode none\n"
        f"addr add {GUEST_LL}/64 dev eth0 nodad\n"
        f"addr add {address}/128 dev eth0 nodad\n"
        "link set dev eth0 up\n"
        f"route add default via {HOST_LL} dev eth0\n"
    )
    _run(["ip", "-n", names.netns, "-batch", "-"], guest)
    _nft_in(names, ruleset(firewall, fresh=True))  # a new namespace has no table to replace
    # `add`, not `replace`: an address already routed elsewhere must fail loudly.
    _run(["ip", "-6", "route", "add", f"{address}/128", "via", GUEST_LL, "dev", veth])


def guard_script() -> str:
    """The nft script that atomically (re)creates the host guard table."""
    nd = ", ".join(ND_ONLY)
    from_sandbox = f'iifname "{VETH_PREFIX}*"'
    chains = []
    for chain in ("input", "forward"):
        chains += [
            f"  chain {chain} {{",
            f"    type filter hook {chain} priority filter; policy accept;",
            f"    {from_sandbox} ct state established,related accept",
            f"    {from_sandbox} meta l4proto ipv6-icmp icmpv6 type {{ {nd} }} accept",
            f"    {from_sandbox} drop",
            "  }",
        ]
    script = [f"table {HOST_TABLE} {{}}", f"delete table {HOST_TABLE}", f"table {HOST_TABLE} {{"]
    return "\n".join([*script, *chains, "}", ""])


def host_guard_listing() -> str | None:
    """`nft list` of the host guard table as it is now; None when it is missing."""
    argv = ["nft", "list", "table", *HOST_TABLE.split()]  # found on PATH, as `_run` does
    proc = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - fixed argv
    return proc.stdout.decode() if proc.returncode == 0 else None


class HostGuard:
    """Keeps the root namespace's guard table in place, writing it only when needed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # starts run in threads; one check or write at a time
        # nft's own rendering of the table as this process wrote it: our script is not
        # byte-for-byte what `nft list` prints back, so compare listing to listing.
        self._written: str | None = None

    def ensure(self) -> None:
        """Write the table on first use, or if it is missing or differs from ours."""
        with self._lock:
            if self._written is not None and host_guard_listing() == self._written:
                return
            _run(["nft", "-f", "-"], guard_script())
            self._written = host_guard_listing()


HOST_GUARD = HostGuard()  # one per agent process, shared by its runtimes


def apply_firewall(names: Names, firewall: Firewall) -> None:
    """Replace the namespace's `inet hangar` table in one nft transaction."""
    _nft_in(names, ruleset(firewall))


def _nft_in(names: Names, script: str) -> None:
    _run(["nsenter", f"--net={names.netns_path}", "nft", "-f", "-"], script)


def ruleset(firewall: Firewall, *, fresh: bool = False) -> str:
    """The nft script for a policy: replaces the table atomically (only creates it if fresh)."""
    check(firewall)
    icmp = ", ".join(ICMPV6_ACCEPTED)
    # Creating a table is cheap; any batch that deletes one waits out an RCU grace period.
    replace = [] if fresh else [f"table {TABLE} {{}}", f"delete table {TABLE}"]
    lines = [
        *replace,
        f"table {TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        "    ct state established,related accept",
        '    iif "lo" accept',
        f"    meta l4proto ipv6-icmp icmpv6 type {{ {icmp} }} accept",
    ]
    if firewall.mode == "open":
        lines.append("    accept")
    else:
        lines.append("    ct state invalid drop")
        for rule in firewall.ingress:
            nets = sources(rule)
            if nets == []:
                continue  # no source may use it: it allows nothing
            match = (
                "meta nfproto ipv6"
                if nets is None
                else f"ip6 saddr {{ {', '.join(str(n) for n in nets)} }}"
            )
            ports = (
                str(rule.port_start)
                if rule.port_start == rule.port_end
                else f"{rule.port_start}-{rule.port_end}"
            )
            lines.append(f"    {match} {rule.protocol} dport {ports} accept")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def present(names: Names) -> bool:
    """Whether the namespace is pinned and the host end of the link exists."""
    return names.netns_path.exists() and (SYS_NET / names.host_veth).exists()


def repin(names: Names, pid: int) -> None:
    """Pin a live sandbox's namespace again if its /run/netns entry vanished."""
    if not names.netns_path.exists():
        _run(["ip", "netns", "attach", names.netns, str(pid)])


def teardown(names: Names) -> None:
    """Remove the link (with its route and peer) and the namespace; safe when absent."""
    if (SYS_NET / names.host_veth).exists():
        try:
            _run(["ip", "link", "del", names.host_veth])
        except OSError:
            if (SYS_NET / names.host_veth).exists():
                raise
    if names.netns_path.exists() or names.netns_path.is_symlink():
        _run(["ip", "netns", "del", names.netns])
