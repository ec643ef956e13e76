"""The IPv6 ingress firewall from the host side: a VM listens on two ports; which answer?

Each VM has its own network namespace and a routed IPv6 address (`publicIpv6`) the host
reaches directly; the agent enforces the policy with nftables inside that namespace.
"""

from __future__ import annotations

import socket
import time

import httpx

from fastvm.conftest import Org
from fastvm.helpers import create_vm, sh

PORTS = (8001, 8002)
# A tiny TCP server: answers every connection with its port, forever.
SERVER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('::',int(sys.argv[1])))\n"
    "s.listen()\n"
    "while True:\n"
    "    c,_=s.accept()\n"
    "    c.sendall(sys.argv[1].encode())\n"
    "    c.close()\n"
)


def answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from the host reaches the VM's server on `port`."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(16) == str(port).encode()
    except OSError:
        return False


def reachable(address: str, expected: dict[int, bool], timeout: float = 20.0) -> dict[int, bool]:
    """Poll until the ports answer as expected (or time runs out); what was seen last."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {port: answers(address, port) for port in expected}
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def write_server(fvm: httpx.Client, o: Org, vm_id: str) -> None:
    """Put the tiny server's script in the VM's home."""
    write = sh(fvm, o, vm_id, f"cat > ~/serve.py <<'EOF'\n{SERVER}EOF")
    assert write["exitCode"] == 0, write


def serve_ports(fvm: httpx.Client, o: Org, vm_id: str) -> None:
    """Start the server on each of PORTS and wait until all listen (seen from inside)."""
    for port in PORTS:
        started = sh(
            fvm, o, vm_id, f"setsid nohup python3 ~/serve.py {port} >/dev/null 2>&1 < /dev/null &"
        )
        assert started["exitCode"] == 0, started
    # Checked from inside the VM, where no firewall applies.
    probe = "; ".join(
        f"python3 -c 'import socket; socket.create_connection((\"::1\", {p}), 5)'" for p in PORTS
    )
    deadline = time.monotonic() + 30
    while sh(fvm, o, vm_id, probe)["exitCode"] != 0:
        assert time.monotonic() < deadline, "the servers did not start"
        time.sleep(0.5)


def put(fvm: httpx.Client, o: Org, vm_id: str, policy: dict[str, object]) -> dict[str, object]:
    resp = fvm.put(f"/v1/vms/{vm_id}/firewall", json=policy, headers=o.headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_ingress_policy_is_enforced_from_the_host(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    address = vm["publicIpv6"]
    assert address, vm
    assert ":" in address, vm
    assert vm["firewall"] == {"mode": "restricted", "ingress": []}
    write_server(fvm, org, vm["id"])
    serve_ports(fvm, org, vm["id"])

    # Both servers listen, but the default policy closes both to the outside.
    assert reachable(address, {8001: False, 8002: False}, timeout=3) == {8001: False, 8002: False}

    one = {"mode": "restricted", "ingress": [{"protocol": "tcp", "portStart": 8001}]}
    assert put(fvm, org, vm["id"], one)["firewall"] == {
        "mode": "restricted",
        "ingress": [
            {"protocol": "tcp", "portStart": 8001, "portEnd": 8001, "sourceCidrs": ["::/0"]}
        ],
    }
    assert reachable(address, {8001: True, 8002: False}) == {8001: True, 8002: False}

    opened = fvm.patch(f"/v1/vms/{vm['id']}/firewall", json={"mode": "open"}, headers=org.headers)
    assert opened.status_code == 200, opened.text
    assert opened.json()["firewall"]["mode"] == "open"
    assert opened.json()["firewall"]["ingress"][0]["portStart"] == 8001  # PATCH keeps the rules
    assert reachable(address, {8001: True, 8002: True}) == {8001: True, 8002: True}

    elsewhere = {
        "mode": "restricted",
        "ingress": [{"protocol": "tcp", "portStart": 8001, "sourceCidrs": ["2001:db8::/32"]}],
    }
    put(fvm, org, vm["id"], elsewhere)
    assert reachable(address, {8001: False, 8002: False}) == {8001: False, 8002: False}

    # The stored policy is what GET shows.
    got = fvm.get(f"/v1/vms/{vm['id']}", headers=org.headers).json()
    assert got["firewall"]["ingress"][0]["sourceCidrs"] == ["2001:db8::/32"]


def test_a_vm_from_a_snapshot_enforces_the_snapshot_firewall(fvm: httpx.Client, org: Org) -> None:
    policy = {"mode": "restricted", "ingress": [{"protocol": "tcp", "portStart": 8001}]}
    source = create_vm(fvm, org, firewall=policy)
    write_server(fvm, org, source["id"])  # the snapshot carries the script
    made = fvm.post("/v1/snapshots", json={"vmId": source["id"]}, headers=org.headers)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "ready", made.text

    child = create_vm(fvm, org, snapshotId=made.json()["id"])
    assert child["firewall"]["ingress"][0]["portStart"] == 8001
    assert child["publicIpv6"]
    assert child["publicIpv6"] != source["publicIpv6"]
    serve_ports(fvm, org, child["id"])
    # Enforced on the child's own address, not only shown in its JSON.
    assert reachable(child["publicIpv6"], {8001: True, 8002: False}) == {8001: True, 8002: False}
