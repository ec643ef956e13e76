"""Limits that must really hold: disk size, machine-type memory, and team quotas."""

from __future__ import annotations

import httpx

from fastvm.conftest import Org
from fastvm.helpers import create_vm, error_of, sh
from support.live import LiveServer
from support.processes import server_cli

GIB = 1024**3


def test_writing_past_the_disk_size_fails_inside_the_vm(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org, diskGiB=10)
    assert vm["diskGiB"] == 10
    # Allocated, not written: the check costs no real 10 GiB of I/O.
    fits = sh(fvm, org, vm["id"], "fallocate -l 1G /var/tmp/fits && echo ok")
    assert fits["exitCode"] == 0, fits
    assert fits["stdout"] == "ok\n", fits
    too_big = sh(fvm, org, vm["id"], "fallocate -l 11G /var/tmp/too-big")
    assert too_big["exitCode"] != 0, too_big
    assert "No space left on device" in too_big["stderr"], too_big


def test_a_larger_disk_holds_more(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org, diskGiB=13)
    assert vm["diskGiB"] == 13
    fits = sh(fvm, org, vm["id"], "fallocate -l 11G /var/tmp/big && echo ok")
    assert fits["exitCode"] == 0, fits
    assert fits["stdout"] == "ok\n", fits
    too_big = sh(fvm, org, vm["id"], "fallocate -l 3G /var/tmp/more")
    assert too_big["exitCode"] != 0
    assert "No space left on device" in too_big["stderr"]


def test_a_c1m2_vm_cannot_hold_3_gib(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org, machineType="c1m2")
    assert (vm["cpu"], vm["memoryMiB"]) == (1, 2048)
    # Bytes of b"x" are written, so every page is really resident (calloc'd zeros are not).
    held = sh(fvm, org, vm["id"], "python3 -c 'b = b\"x\" * (1 << 30); print(len(b))'")
    assert held["exitCode"] == 0, held
    assert held["stdout"] == f"{GIB}\n", held
    oom = sh(fvm, org, vm["id"], "python3 -c 'b = b\"x\" * (3 << 30); print(len(b))'")
    assert oom["exitCode"] != 0, oom  # OOM-killed (137) or MemoryError (1)
    assert oom["stdout"] == ""
    alive = sh(fvm, org, vm["id"], "echo alive")
    assert alive["stdout"] == "alive\n"


def set_quota(server: LiveServer, team_id: str, **limits: int) -> None:
    """Give a team its own limits, as an admin does: `hangar admin set-quota`."""
    args = ["admin", "set-quota", "--team", team_id]
    for name, value in limits.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    result = server_cli(server, *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_quotas_refuse_what_exceeds_them(
    fvm: httpx.Client, org: Org, fastvm_server: LiveServer
) -> None:
    set_quota(fastvm_server, org.id, vcpu=2, memory_mib=4096, disk_gib=25, snapshots=0)
    quotas = fvm.get("/v1/org/quotas", headers=org.headers).json()
    assert quotas["limits"] == {"vcpu": 2, "memoryMiB": 4096, "diskGiB": 25, "snapshotCount": 0}
    assert quotas["usage"] == {"vcpu": 0, "memoryMiB": 0, "diskGiB": 0, "snapshotCount": 0}

    too_big = fvm.post("/v1/vms", json={"machineType": "c4m8"}, headers=org.headers)
    assert too_big.status_code == 403, too_big.text
    assert "vCPU" in error_of(too_big)

    vm = create_vm(fvm, org, machineType="c1m2", diskGiB=15)
    usage = fvm.get("/v1/org/quotas", headers=org.headers).json()["usage"]
    assert usage == {"vcpu": 1, "memoryMiB": 2048, "diskGiB": 15, "snapshotCount": 0}

    disk = fvm.post("/v1/vms", json={"machineType": "c1m2", "diskGiB": 11}, headers=org.headers)
    assert disk.status_code == 403, disk.text
    assert fvm.get("/v1/vms", headers=org.headers).json()[0]["id"] == vm["id"]

    snap = fvm.post("/v1/snapshots", json={"vmId": vm["id"]}, headers=org.headers)
    assert snap.status_code == 409, snap.text  # createSnapshot documents no 403
    error_of(snap)

    # Freed capacity is usable again.
    assert fvm.delete(f"/v1/vms/{vm['id']}", headers=org.headers).status_code == 200
    again = fvm.post("/v1/vms", json={"machineType": "c2m4"}, headers=org.headers)
    assert again.status_code in (201, 202), again.text


def test_the_memory_quota_alone_refuses(
    fvm: httpx.Client, org: Org, fastvm_server: LiveServer
) -> None:
    set_quota(fastvm_server, org.id, vcpu=64, memory_mib=3000)
    too_much = fvm.post("/v1/vms", json={"machineType": "c2m4"}, headers=org.headers)
    assert too_much.status_code == 403, too_much.text
    assert "memory" in error_of(too_much)
    assert "vCPU" not in error_of(too_much)
    vm = create_vm(fvm, org, machineType="c1m2")  # 2048 MiB: within it
    second = fvm.post("/v1/vms", json={"machineType": "c1m2"}, headers=org.headers)
    assert second.status_code == 403, second.text  # 4096 MiB in all
    assert "memory" in error_of(second)
    assert [v["id"] for v in fvm.get("/v1/vms", headers=org.headers).json()] == [vm["id"]]
