"""Snapshots: made from a running VM, renamed, listed, deleted; VMs made from them."""

from __future__ import annotations

import uuid

import httpx

from fastvm.conftest import Org
from fastvm.helpers import create_vm, error_of, sh

RULE = {"protocol": "tcp", "portStart": 8080, "portEnd": 8081, "sourceCidrs": ["fd00::/8"]}


def test_a_vm_made_from_a_snapshot_has_its_files_and_firewall(fvm: httpx.Client, org: Org) -> None:
    policy = {"mode": "restricted", "ingress": [RULE]}
    vm = create_vm(fvm, org, diskGiB=12, firewall=policy)
    assert vm["firewall"] == policy
    assert sh(fvm, org, vm["id"], "echo kept > ~/note")["exitCode"] == 0

    made = fvm.post("/v1/snapshots", json={"vmId": vm["id"], "name": "base"}, headers=org.headers)
    assert made.status_code == 201, made.text
    snap = made.json()
    assert uuid.UUID(snap["id"])
    assert (snap["name"], snap["vmId"], snap["orgId"]) == ("base", vm["id"], org.id)
    assert snap["status"] == "ready"
    assert snap["firewall"] == policy
    # The source VM keeps running.
    assert fvm.get(f"/v1/vms/{vm['id']}", headers=org.headers).json()["status"] == "running"
    dup = fvm.post("/v1/snapshots", json={"vmId": vm["id"], "name": "base"}, headers=org.headers)
    assert dup.status_code == 409, dup.text

    smaller = fvm.post(
        "/v1/vms", json={"snapshotId": snap["id"], "diskGiB": 10}, headers=org.headers
    )
    assert smaller.status_code == 400, smaller.text
    error_of(smaller)

    child = create_vm(fvm, org, snapshotId=snap["id"], name="child")
    assert child["firewall"] == policy
    assert child["diskGiB"] == 12
    assert child["sourceName"] == "base"
    assert (child["cpu"], child["memoryMiB"]) == (vm["cpu"], vm["memoryMiB"])
    assert sh(fvm, org, child["id"], "cat ~/note")["stdout"] == "kept\n"


def test_snapshot_rename_list_delete(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    snap = fvm.post("/v1/snapshots", json={"vmId": vm["id"]}, headers=org.headers).json()
    assert snap["name"]  # a default name
    renamed = fvm.patch(
        f"/v1/snapshots/{snap['id']}", json={"name": "renamed"}, headers=org.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
    listed = fvm.get("/v1/snapshots", headers=org.headers).json()
    assert [(s["id"], s["name"]) for s in listed] == [(snap["id"], "renamed")]

    deleted = fvm.delete(f"/v1/snapshots/{snap['id']}", headers=org.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": snap["id"], "deleted": True}
    assert fvm.delete(f"/v1/snapshots/{snap['id']}", headers=org.headers).status_code == 404
    assert fvm.get("/v1/snapshots", headers=org.headers).json() == []


def test_snapshot_errors(fvm: httpx.Client, org: Org) -> None:
    absent = fvm.post("/v1/snapshots", json={"vmId": str(uuid.uuid4())}, headers=org.headers)
    assert absent.status_code == 404
    assert fvm.post("/v1/snapshots", json={"vmId": "nope"}, headers=org.headers).status_code == 400
    assert fvm.post("/v1/snapshots", json={}, headers=org.headers).status_code == 400
    assert (
        fvm.patch(
            f"/v1/snapshots/{uuid.uuid4()}", json={"name": "x"}, headers=org.headers
        ).status_code
        == 404
    )
    assert fvm.delete("/v1/snapshots/nope", headers=org.headers).status_code == 400
