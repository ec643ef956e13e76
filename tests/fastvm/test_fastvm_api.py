"""The FastVM face through HTTP: auth, errors, VM lifecycle, exec, health, its OpenAPI."""

from __future__ import annotations

import uuid

import httpx

from fastvm.conftest import CAPACITY_C8M16, Org
from fastvm.helpers import create_vm, error_of, run, sh, wait_running
from support.live import LiveServer


def test_auth_is_an_api_key_or_a_user_jwt(fvm: httpx.Client, org: Org) -> None:
    assert error_of(fvm.get("/v1/vms"))
    assert fvm.get("/v1/vms").status_code == 401
    assert fvm.get("/v1/vms", headers={"X-API-Key": "hlm_nope"}).status_code == 401
    bad_jwt = {"Authorization": "Bearer not.a.jwt"}
    assert fvm.get("/v1/vms", headers=bad_jwt).status_code == 401
    assert fvm.get("/v1/vms", headers=org.headers).json() == []
    assert fvm.get("/v1/vms", headers=org.account.headers).json() == []
    quotas = fvm.get("/v1/org/quotas", headers=org.account.headers)
    assert quotas.status_code == 200
    assert quotas.json()["orgId"] == org.id
    assert uuid.UUID(org.id)


def test_errors_use_the_fastvm_shape(fvm: httpx.Client, org: Org) -> None:
    unknown = fvm.get("/v1/nothing-here", headers=org.headers)
    assert unknown.status_code == 404
    error_of(unknown)
    malformed = fvm.get("/v1/vms/not-a-uuid", headers=org.headers)
    assert malformed.status_code == 400
    error_of(malformed)
    absent = fvm.get(f"/v1/vms/{uuid.uuid4()}", headers=org.headers)
    assert absent.status_code == 404
    error_of(absent)
    wrong_method = fvm.put("/v1/vms", headers=org.headers)
    assert wrong_method.status_code == 405  # a method the path does not serve, still in shape
    assert error_of(wrong_method) == "method not allowed"
    assert set(wrong_method.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    trailing = fvm.get("/v1/vms/", headers=org.headers)
    assert trailing.status_code == 404
    error_of(trailing)
    not_json = fvm.post(
        "/v1/vms", content=b"{", headers={**org.headers, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert error_of(not_json) == "invalid JSON body"


def test_create_needs_exactly_one_source_and_valid_fields(fvm: httpx.Client, org: Org) -> None:
    bad_bodies = [
        {},
        {"machineType": "c1m2", "snapshotId": str(uuid.uuid4())},
        {"machineType": "c3m3"},
        {"machineType": "c1m2", "name": "x" * 65},
        {"machineType": "c1m2", "diskGiB": 9},
        {"machineType": "c1m2", "diskGiB": "20"},
        {"machineType": "c1m2", "firewall": {"mode": "closed"}},
        {
            "machineType": "c1m2",
            "firewall": {"mode": "restricted", "ingress": [{"protocol": "tcp"}]},
        },
        {
            "machineType": "c1m2",
            "firewall": {
                "mode": "restricted",
                "ingress": [{"protocol": "tcp", "portStart": 80, "sourceCidrs": ["10.0.0.0/8"]}],
            },
        },
        {
            "machineType": "c1m2",
            "firewall": {
                "mode": "restricted",
                "ingress": [{"protocol": "tcp", "portStart": 90, "portEnd": 80}],
            },
        },
    ]
    for body in bad_bodies:
        resp = fvm.post("/v1/vms", json=body, headers=org.headers)
        assert resp.status_code == 400, (body, resp.text)
        error_of(resp)
    unknown_snapshot = fvm.post(
        "/v1/vms", json={"snapshotId": str(uuid.uuid4())}, headers=org.headers
    )
    assert unknown_snapshot.status_code == 400, unknown_snapshot.text  # createVM has no 404
    assert "snapshot not found" in error_of(unknown_snapshot)
    assert fvm.get("/v1/vms", headers=org.headers).json() == []


def test_vm_lifecycle(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org, machineType="c2m4", name="web-1", diskGiB=12)
    assert uuid.UUID(vm["id"])
    assert vm["name"] == "web-1"
    assert vm["orgId"] == org.id
    assert vm["machineName"] == "c2m4"
    assert (vm["cpu"], vm["memoryMiB"], vm["diskGiB"]) == (2, 4096, 12)
    assert vm["status"] == "running"
    assert vm["firewall"] == {"mode": "restricted", "ingress": []}
    assert "deletedAt" not in vm or vm["deletedAt"] is None

    got = fvm.get(f"/v1/vms/{vm['id']}", headers=org.headers).json()
    assert got["id"] == vm["id"]
    assert got["name"] == "web-1"
    assert [v["id"] for v in fvm.get("/v1/vms", headers=org.headers).json()] == [vm["id"]]

    renamed = fvm.patch(f"/v1/vms/{vm['id']}", json={"name": "web-2"}, headers=org.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "web-2"
    assert (
        fvm.patch(f"/v1/vms/{vm['id']}", json={"name": "y" * 65}, headers=org.headers).status_code
        == 400
    )

    deleted = fvm.delete(f"/v1/vms/{vm['id']}", headers=org.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == vm["id"]
    assert deleted.json()["deleted"] is True
    assert deleted.json()["deletedAt"]
    # A deleted VM stays readable, stopped, with its deletedAt; nothing else reaches it.
    gone = fvm.get(f"/v1/vms/{vm['id']}", headers=org.headers)
    assert gone.status_code == 200, gone.text
    assert (gone.json()["id"], gone.json()["name"]) == (vm["id"], "web-2")
    assert gone.json()["status"] == "stopped"
    assert gone.json()["deletedAt"] == deleted.json()["deletedAt"]
    assert "publicIpv6" not in gone.json()
    assert fvm.delete(f"/v1/vms/{vm['id']}", headers=org.headers).status_code == 404
    assert fvm.get("/v1/vms", headers=org.headers).json() == []
    for method, path, body in (
        ("PATCH", "", {"name": "again"}),
        ("PUT", "/firewall", {"mode": "open"}),
        ("PATCH", "/firewall", {"mode": "open"}),
        ("POST", "/exec", {"command": ["true"]}),
        ("POST", "/console-token", None),
    ):
        after = fvm.request(method, f"/v1/vms/{vm['id']}{path}", json=body, headers=org.headers)
        assert after.status_code == 404, (method, path, after.text)


def test_default_name_and_other_orgs_see_nothing(
    fvm: httpx.Client, org: Org, fastvm_server: LiveServer
) -> None:
    from fastvm.conftest import cleanup, new_org

    vm = create_vm(fvm, org)
    assert vm["name"] == f"vm-{vm['id'][:8]}"
    other = new_org(fastvm_server, "Other Org")
    try:
        assert fvm.get(f"/v1/vms/{vm['id']}", headers=other.headers).status_code == 404
        assert fvm.get("/v1/vms", headers=other.headers).json() == []
        assert fvm.delete(f"/v1/vms/{vm['id']}", headers=other.headers).status_code == 404
        # Deleted, it stays invisible to other organizations.
        assert fvm.delete(f"/v1/vms/{vm['id']}", headers=org.headers).status_code == 200
        assert fvm.get(f"/v1/vms/{vm['id']}", headers=other.headers).status_code == 404
    finally:
        cleanup(fvm, other)


def test_exec(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    out = run(fvm, org, vm["id"], "echo", "hello")
    assert out["exitCode"] == 0
    assert out["stdout"] == "hello\n"
    assert out["stderr"] == ""
    assert out["timedOut"] is False
    assert out["stdoutTruncated"] is False
    assert out["stderrTruncated"] is False
    assert out["durationMs"] >= 0
    failed = sh(fvm, org, vm["id"], "echo oops >&2; printf '\\377'; exit 3")
    assert failed["exitCode"] == 3
    assert failed["stderr"] == "oops\n"
    assert failed["stdout"] == "\ufffd"  # invalid UTF-8 is replaced
    slow = sh(fvm, org, vm["id"], "sleep 30", timeout=1)
    assert slow["timedOut"] is True
    big = sh(fvm, org, vm["id"], "head -c 3000000 /dev/zero | tr '\\0' a")
    assert big["stdoutTruncated"] is True
    assert len(big["stdout"]) < 3000000
    for body in ({"command": []}, {"command": "ls"}, {"command": ["ls"], "timeoutSec": 0}):
        resp = fvm.post(f"/v1/vms/{vm['id']}/exec", json=body, headers=org.headers)
        assert resp.status_code == 400, (body, resp.text)
    absent = fvm.post(
        f"/v1/vms/{uuid.uuid4()}/exec", json={"command": ["true"]}, headers=org.headers
    )
    assert absent.status_code == 404


def test_health_probes(fvm: httpx.Client) -> None:
    for probe in ("/healthz", "/livez", "/readyz"):
        resp = fvm.get(probe)
        assert resp.status_code == 200, (probe, resp.text)
        assert resp.json()["status"] == "ok"
    assert fvm.get("/healthz").json()["checks"] == {"database": "ok", "agents": "ok"}


def test_openapi_document(fvm: httpx.Client) -> None:
    doc = fvm.get("/openapi.json").json()
    assert doc["info"]["title"].startswith("FastVM")
    paths = set(doc["paths"])
    assert {"/v1/vms", "/v1/vms/{id}", "/v1/snapshots", "/v1/org/quotas"} <= paths


def test_a_vm_without_capacity_is_queued_then_runs(fvm: httpx.Client, org: Org) -> None:
    """202 `provisioning` when no host has room; it starts once room is made."""
    running: list[str] = []
    queued: dict[str, object] | None = None
    # The server leaves room for at most CAPACITY_C8M16 of them (fewer on a small machine).
    for _ in range(CAPACITY_C8M16 + 1):
        resp = fvm.post("/v1/vms", json={"machineType": "c8m16"}, headers=org.headers)
        assert resp.status_code in (201, 202), resp.text
        if resp.status_code == 202:
            queued = resp.json()
            break
        assert resp.json()["status"] == "running"
        running.append(resp.json()["id"])
    assert queued is not None, "the host never ran out of room"
    assert queued["status"] == "provisioning"
    got = fvm.get(f"/v1/vms/{queued['id']}", headers=org.headers).json()
    assert got["status"] == "provisioning"
    assert "publicIpv6" not in got or got["publicIpv6"]  # none until placed
    for vm_id in running:
        assert fvm.delete(f"/v1/vms/{vm_id}", headers=org.headers).status_code == 200
    ready = wait_running(fvm, org, str(queued["id"]))
    assert ready["publicIpv6"]
    assert run(fvm, org, ready["id"], "echo", "placed")["stdout"] == "placed\n"


def test_firewall_put_replaces_and_patch_merges(fvm: httpx.Client, org: Org) -> None:
    vm = create_vm(fvm, org)
    url = f"/v1/vms/{vm['id']}/firewall"
    rule = {"protocol": "udp", "portStart": 5000, "portEnd": 5010, "description": "game"}
    put = fvm.put(url, json={"mode": "restricted", "ingress": [rule]}, headers=org.headers)
    assert put.status_code == 200, put.text
    assert put.json()["firewall"] == {
        "mode": "restricted",
        "ingress": [{**rule, "sourceCidrs": ["::/0"]}],
    }
    opened = fvm.patch(url, json={"mode": "open"}, headers=org.headers).json()["firewall"]
    assert opened["mode"] == "open"
    assert opened["ingress"][0]["portStart"] == 5000
    cleared = fvm.patch(url, json={"ingress": []}, headers=org.headers).json()["firewall"]
    assert cleared == {"mode": "open", "ingress": []}
    unchanged = fvm.patch(url, json={}, headers=org.headers).json()["firewall"]
    assert unchanged == cleared
    replaced = fvm.put(url, json={"mode": "restricted"}, headers=org.headers).json()["firewall"]
    assert replaced == {"mode": "restricted", "ingress": []}
    bad_rules = [
        {"protocol": "icmp", "portStart": 1},
        {"protocol": "tcp", "portStart": 0},
        {"protocol": "tcp", "portStart": 70000},
        {"protocol": "tcp", "portStart": 22, "sourceCidrs": ["not-a-cidr"]},
        {"protocol": "tcp", "portStart": 22, "sourceCidrs": []},
        {"protocol": "tcp", "portStart": 22, "description": "d" * 257},
    ]
    for bad in bad_rules:
        resp = fvm.put(url, json={"mode": "restricted", "ingress": [bad]}, headers=org.headers)
        assert resp.status_code == 400, (bad, resp.text)
        error_of(resp)
    assert fvm.get(f"/v1/vms/{vm['id']}", headers=org.headers).json()["firewall"] == replaced
    absent = fvm.put(f"/v1/vms/{uuid.uuid4()}/firewall", json={"mode": "open"}, headers=org.headers)
    assert absent.status_code == 404
