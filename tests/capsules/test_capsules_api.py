"""Capsules through the real Wrenn API on a real agent with the jail runtime."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from capsules.helpers import open_ws, pty_output_until, recv, run, type_keys, wait_status
from support.live import LiveServer
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn, error_of

Capsule = dict[str, Any]


def test_create_get_list_destroy(capi: httpx.Client, owner: Account) -> None:
    resp = capi.post("/v1/capsules", json={"vcpus": 1, "memory_mb": 256}, headers=owner.headers)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["id"].startswith("cl-")
    assert made["status"] == "running"
    assert (made["template"], made["vcpus"], made["memory_mb"]) == ("minimal", 1, 256)
    got = capi.get(f"/v1/capsules/{made['id']}", headers=owner.headers).json()
    assert got["id"] == made["id"]
    listed = capi.get("/v1/capsules", headers=owner.headers).json()
    assert [c["id"] for c in listed] == [made["id"]]
    assert capi.delete(f"/v1/capsules/{made['id']}", headers=owner.headers).status_code == 204
    assert capi.get(f"/v1/capsules/{made['id']}", headers=owner.headers).status_code == 404
    assert capi.get("/v1/capsules", headers=owner.headers).json() == []


def test_exec_python_as_unprivileged_user(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    out = run(capi, owner, capsule["id"], "python3", args=["-c", "print(sum(range(10)))"])
    assert (out["stdout"], out["exit_code"], out["encoding"]) == ("45\n", 0, "utf-8")
    assert out["sandbox_id"] == capsule["id"]
    assert run(capi, owner, capsule["id"], "id -u")["stdout"] == "1000\n"
    failed = run(capi, owner, capsule["id"], "echo oops >&2; exit 3")
    assert (failed["stderr"], failed["exit_code"]) == ("oops\n", 3)


def test_exec_binary_output_is_base64(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    out = run(capi, owner, capsule["id"], "printf '\\377\\376ok'")
    assert out["encoding"] == "base64"
    assert base64.b64decode(out["stdout"]) == b"\xff\xfeok"


def test_exec_timeout_kills_the_command(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    started = time.monotonic()
    out = run(capi, owner, capsule["id"], "sleep 30; echo never", timeout_sec=1)
    assert time.monotonic() - started < 15
    assert "never" not in out["stdout"]
    assert out["exit_code"] != 0
    # The process group is gone: nothing is left sleeping.
    assert "sleep 30" not in run(capi, owner, capsule["id"], "ps -eo args")["stdout"]


def test_files_write_read_list_mkdir_remove(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    cid = capsule["id"]
    blob = os.urandom(3 * 1024 * 1024 + 17)
    resp = capi.post(
        f"/v1/capsules/{cid}/files/write",
        data={"path": "/home/user/data/blob.bin"},
        files={"file": ("blob.bin", blob)},
        headers=owner.headers,
    )
    assert resp.status_code == 204, resp.text
    for route in ("read", "stream/read"):
        got = capi.post(
            f"/v1/capsules/{cid}/files/{route}",
            json={"path": "/home/user/data/blob.bin"},
            headers=owner.headers,
        )
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.content == blob
    # Written as the capsule's user, visible to its processes.
    assert run(capi, owner, cid, "stat -c %s:%U /home/user/data/blob.bin")["stdout"] == (
        f"{len(blob)}:user\n"
    )
    made = capi.post(
        f"/v1/capsules/{cid}/files/mkdir",
        json={"path": "/home/user/data/a/b"},
        headers=owner.headers,
    )
    assert made.status_code == 200, made.text
    assert made.json()["entry"]["type"] == "directory"
    assert made.json()["entry"]["path"] == "/home/user/data/a/b"
    shallow = capi.post(
        f"/v1/capsules/{cid}/files/list", json={"path": "/home/user/data"}, headers=owner.headers
    ).json()["entries"]
    assert {e["name"] for e in shallow} == {"blob.bin", "a"}
    deep = capi.post(
        f"/v1/capsules/{cid}/files/list",
        json={"path": "/home/user/data", "depth": 3},
        headers=owner.headers,
    ).json()["entries"]
    assert "/home/user/data/a/b" in {e["path"] for e in deep}
    blob_entry = next(e for e in deep if e["name"] == "blob.bin")
    assert blob_entry["size"] == len(blob)
    assert blob_entry["permissions"].startswith("-rw")
    removed = capi.post(
        f"/v1/capsules/{cid}/files/remove", json={"path": "/home/user/data"}, headers=owner.headers
    )
    assert removed.status_code == 204
    missing = capi.post(
        f"/v1/capsules/{cid}/files/read",
        json={"path": "/home/user/data/blob.bin"},
        headers=owner.headers,
    )
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"


def test_streaming_upload_and_size_limit(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    cid = capsule["id"]

    def body(size: int) -> Any:
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            yield chunk

    limit = 8 * 1024 * 1024
    boundary = "hangarboundary"

    def multipart(size: int) -> Any:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/tmp/big\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        yield from body(size)
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    ok = capi.post(
        f"/v1/capsules/{cid}/files/stream/write", content=multipart(limit), headers=headers
    )
    assert ok.status_code == 204, ok.text
    assert run(capi, owner, cid, "stat -c %s /tmp/big")["stdout"] == f"{limit}\n"
    too_big = capi.post(
        f"/v1/capsules/{cid}/files/stream/write", content=multipart(limit + 65536), headers=headers
    )
    assert too_big.status_code == 413
    assert error_of(too_big)["code"] == "too_large"


def test_paths_cannot_escape(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    resp = capi.post(
        f"/v1/capsules/{capsule['id']}/files/read",
        json={"path": "/../../etc/shadow"},
        headers=owner.headers,
    )
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "invalid_request"


def test_exec_stream(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    with open_ws(capi, owner, f"/v1/capsules/{capsule['id']}/exec/stream") as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "cmd": "sh",
                    "args": ["-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo err >&2"],
                }
            )
        )
        first = recv(ws)
        assert first["type"] == "start"
        assert first["pid"] > 0
        out, err, exit_code = "", "", None
        while exit_code is None:
            m = recv(ws)
            if m["type"] == "stdout":
                out += m["data"]
            elif m["type"] == "stderr":
                err += m["data"]
            elif m["type"] == "exit":
                exit_code = m["exit_code"]
        assert (out, err, exit_code) == ("line1\nline2\nline3\n", "err\n", 0)


def test_exec_stream_stop(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    with open_ws(capi, owner, f"/v1/capsules/{capsule['id']}/exec/stream") as ws:
        ws.send(json.dumps({"type": "start", "cmd": "sleep", "args": ["60"]}))
        assert recv(ws)["type"] == "start"
        ws.send(json.dumps({"type": "stop"}))
        while (m := recv(ws))["type"] != "exit":
            pass
        assert m["exit_code"] != 0


def test_pty_type_resize_disconnect_reconnect(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    path = f"/v1/capsules/{capsule['id']}/pty"
    with open_ws(capi, owner, path) as ws:
        ws.send(json.dumps({"type": "start", "cols": 100, "rows": 30}))
        started = recv(ws)
        assert started["type"] == "started"
        assert started["tag"].startswith("pty-")
        tag = started["tag"]
        type_keys(ws, "echo hello-$((6*7))\n")
        pty_output_until(ws, b"hello-42")
        ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        type_keys(ws, "stty size\n")
        pty_output_until(ws, b"40 120")
        # Output produced while nobody watches must be replayed on reconnect.
        type_keys(ws, "sleep 1; echo produced-while-away\n")
    time.sleep(2.5)
    with open_ws(capi, owner, path) as ws:
        ws.send(json.dumps({"type": "connect", "tag": tag}))
        again = recv(ws)
        assert again["type"] == "started"
        assert again["tag"] == tag
        pty_output_until(ws, b"produced-while-away")
        type_keys(ws, "exit 7\n")
        while (m := recv(ws))["type"] != "exit":
            pass
        assert m["exit_code"] == 7


def test_pty_connect_unknown_tag(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    with open_ws(capi, owner, f"/v1/capsules/{capsule['id']}/pty") as ws:
        ws.send(json.dumps({"type": "connect", "tag": "pty-00000000"}))
        m = recv(ws)
        assert m["type"] == "error"
        assert m["fatal"] is True


COUNTER = (
    "import os, time\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    open('/tmp/count.tmp', 'w').write(str(n))\n"
    "    os.replace('/tmp/count.tmp', '/tmp/count')\n"
    "    time.sleep(0.05)\n"
)


def _start_counter(capi: httpx.Client, who: Account, cid: object) -> int:
    capi.post(
        f"/v1/capsules/{cid}/files/write",
        data={"path": "/tmp/counter.py"},
        files={"file": ("counter.py", COUNTER.encode())},
        headers=who.headers,
    )
    out = run(
        capi, who, cid, "setsid python3 /tmp/counter.py >/dev/null 2>&1 < /dev/null & echo $!"
    )
    time.sleep(0.5)
    return int(out["stdout"])


def _count(capi: httpx.Client, who: Account, cid: object) -> int:
    return int(run(capi, who, cid, "cat /tmp/count")["stdout"])


def test_pause_resume_keeps_process_memory(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    cid = capsule["id"]
    pid = _start_counter(capi, owner, cid)
    before = _count(capi, owner, cid)
    paused = capi.post(f"/v1/capsules/{cid}/pause", headers=owner.headers)
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    refused = capi.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"}, headers=owner.headers)
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "invalid_state"
    assert capi.post(f"/v1/capsules/{cid}/pause", headers=owner.headers).status_code == 409
    time.sleep(2)
    resumed = capi.post(f"/v1/capsules/{cid}/resume", headers=owner.headers)
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "running"
    after = _count(capi, owner, cid)
    # Frozen 2 s at 20 increments/s: a restarted counter is near 0, an unfrozen one ~40 ahead.
    assert before <= after < before + 20
    time.sleep(0.5)
    assert _count(capi, owner, cid) > after
    assert run(capi, owner, cid, f"kill -0 {pid} && echo alive")["stdout"] == "alive\n"
    assert capi.post(f"/v1/capsules/{cid}/resume", headers=owner.headers).status_code == 409


def test_snapshot_template_carries_files(capi: httpx.Client, owner: Account) -> None:
    src = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    run(capi, owner, src["id"], "echo kept > /home/user/note.txt")
    name = f"snap-{os.urandom(3).hex()}"
    made = capi.post(
        "/v1/snapshots", json={"sandbox_id": src["id"], "name": name}, headers=owner.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["name"] == name
    assert made.json()["type"] == "snapshot"
    assert made.json()["size_bytes"] > 0
    # Wrenn destroys the source capsule once its snapshot is taken.
    assert capi.get(f"/v1/capsules/{src['id']}", headers=owner.headers).status_code == 404
    dup = capi.post(
        "/v1/snapshots", json={"sandbox_id": src["id"], "name": name}, headers=owner.headers
    )
    assert dup.status_code in (404, 409)
    listed = capi.get("/v1/snapshots", params={"type": "snapshot"}, headers=owner.headers).json()
    assert [t["name"] for t in listed] == [name]
    bases = capi.get("/v1/snapshots", params={"type": "base"}, headers=owner.headers).json()
    assert "minimal" in {t["name"] for t in bases}
    child = capi.post(
        "/v1/capsules", json={"template": name, "memory_mb": 256}, headers=owner.headers
    )
    assert child.status_code == 201, child.text
    assert run(capi, owner, child.json()["id"], "cat /home/user/note.txt")["stdout"] == "kept\n"
    in_use = capi.delete(f"/v1/snapshots/{name}", headers=owner.headers)
    assert in_use.status_code == 409  # its files are the child's read-only layer
    capi.delete(f"/v1/capsules/{child.json()['id']}", headers=owner.headers)
    assert capi.delete(f"/v1/snapshots/{name}", headers=owner.headers).status_code == 204
    assert capi.delete(f"/v1/snapshots/{name}", headers=owner.headers).status_code == 404


def test_snapshot_name_taken_needs_overwrite(capi: httpx.Client, owner: Account) -> None:
    name = f"ow-{os.urandom(3).hex()}"
    first = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    assert (
        capi.post(
            "/v1/snapshots", json={"sandbox_id": first["id"], "name": name}, headers=owner.headers
        ).status_code
        == 201
    )
    second = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    run(capi, owner, second["id"], "echo second > /home/user/which")
    clash = capi.post(
        "/v1/snapshots", json={"sandbox_id": second["id"], "name": name}, headers=owner.headers
    )
    assert clash.status_code == 409
    over = capi.post(
        "/v1/snapshots",
        params={"overwrite": "true"},
        json={"sandbox_id": second["id"], "name": name},
        headers=owner.headers,
    )
    assert over.status_code == 201, over.text
    child = capi.post(
        "/v1/capsules", json={"template": name, "memory_mb": 256}, headers=owner.headers
    ).json()
    assert run(capi, owner, child["id"], "cat /home/user/which")["stdout"] == "second\n"
    capi.delete(f"/v1/capsules/{child['id']}", headers=owner.headers)
    capi.delete(f"/v1/snapshots/{name}", headers=owner.headers)


def test_metrics_and_stats(capi: httpx.Client, owner: Account, capsule: Capsule) -> None:
    cid = capsule["id"]
    run(
        capi, owner, cid, "python3 -c 'x = bytearray(50 * 1024 * 1024); import time; time.sleep(2)'"
    )
    live = capi.get(f"/v1/capsules/{cid}/metrics", params={"range": "5m"}, headers=owner.headers)
    assert live.status_code == 200
    points = live.json()["points"]
    assert points
    assert live.json()["range"] == "5m"
    assert max(p["mem_bytes"] for p in points) > 0
    bad = capi.get(f"/v1/capsules/{cid}/metrics", params={"range": "3d"}, headers=owner.headers)
    assert bad.status_code == 400
    capi.post(f"/v1/capsules/{cid}/pause", headers=owner.headers)
    persisted = capi.get(
        f"/v1/capsules/{cid}/metrics", params={"range": "10m"}, headers=owner.headers
    )
    assert persisted.status_code == 200
    assert persisted.json()["points"]
    stats = capi.get("/v1/capsules/stats", params={"range": "5m"}, headers=owner.headers).json()
    assert stats["range"] == "5m"
    assert stats["current"]["running_count"] == 0  # this team's only capsule is paused
    assert stats["peaks"]["running_count"] >= 1
    assert stats["peaks"]["memory_mb"] >= 256
    assert max(stats["series"]["running"]) >= 1
    assert len(stats["series"]["labels"]) == len(stats["series"]["running"])
    capi.delete(f"/v1/capsules/{cid}", headers=owner.headers)
    gone = capi.get(f"/v1/capsules/{cid}/metrics", headers=owner.headers)
    assert gone.status_code == 404


def test_auto_pause_and_ping(capi: httpx.Client, owner: Account) -> None:
    made = capi.post(
        "/v1/capsules", json={"memory_mb": 256, "timeout_sec": 3}, headers=owner.headers
    ).json()
    cid = made["id"]
    for _ in range(3):  # pings keep it running past its timeout
        time.sleep(1.5)
        assert capi.post(f"/v1/capsules/{cid}/ping", headers=owner.headers).status_code == 204
    assert capi.get(f"/v1/capsules/{cid}", headers=owner.headers).json()["status"] == "running"
    wait_status(capi, owner, cid, "paused", timeout=15)
    refused = capi.post(f"/v1/capsules/{cid}/ping", headers=owner.headers)
    assert refused.status_code == 409
    capi.delete(f"/v1/capsules/{cid}", headers=owner.headers)


def test_bad_input(capi: httpx.Client, owner: Account) -> None:
    for body in (
        {"template": "no-such-template"},
        {"vcpus": 0},
        {"vcpus": 999},
        {"memory_mb": 1},
        {"timeout_sec": -1},
    ):
        resp = capi.post("/v1/capsules", json=body, headers=owner.headers)
        assert resp.status_code == 400, (body, resp.text)
        assert error_of(resp)["code"] == "invalid_request"
    assert capi.get("/v1/capsules/cl-nope", headers=owner.headers).status_code == 404
    assert (
        capi.post(
            "/v1/capsules",
            content=b"{",
            headers={**owner.headers, "content-type": "application/json"},
        ).status_code
        == 400
    )
    assert capi.get("/v1/capsules").status_code == 401


def test_other_teams_capsules_are_invisible(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    stranger = Wrenn(capi).signup(name="Stranger")
    cid = capsule["id"]
    for method, path, body in [
        ("GET", f"/v1/capsules/{cid}", None),
        ("POST", f"/v1/capsules/{cid}/exec", {"cmd": "id"}),
        ("POST", f"/v1/capsules/{cid}/files/read", {"path": "/etc/hostname"}),
        ("POST", f"/v1/capsules/{cid}/pause", None),
        ("DELETE", f"/v1/capsules/{cid}", None),
    ]:
        resp = capi.request(method, path, json=body, headers=stranger.headers)
        assert resp.status_code == 404, (path, resp.text)
    assert capi.get("/v1/capsules", headers=stranger.headers).json() == []


def test_api_key_drives_capsules(capi: httpx.Client, owner: Account) -> None:
    key = Wrenn(capi).create_key(owner)["key"]
    headers = {"X-API-Key": key}
    made = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=headers)
    assert made.status_code == 201
    out = capi.post(
        f"/v1/capsules/{made.json()['id']}/exec", json={"cmd": "echo key"}, headers=headers
    )
    assert out.json()["stdout"] == "key\n"
    assert capi.delete(f"/v1/capsules/{made.json()['id']}", headers=headers).status_code == 204


def test_missing_when_host_loses_it_and_survives_agent_restart(
    capi: httpx.Client, owner: Account, agent: AgentProcess, capsule_server: LiveServer
) -> None:
    keep = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    lose = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    pid = _start_counter(capi, owner, keep["id"])
    agent.kill()
    time.sleep(1.5)  # long enough for the control plane to notice
    agent.start()
    # The host was unreachable (its capsules `missing`) until the control plane polls it again.
    wait_status(capi, owner, keep["id"], "running", timeout=30)
    # The restarted agent found the capsule and its processes.
    assert run(capi, owner, keep["id"], f"kill -0 {pid} && echo alive")["stdout"] == "alive\n"
    assert _count(capi, owner, keep["id"]) > 0
    # A capsule its host no longer has becomes `missing`.
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://agent") as direct:
        sandbox_id = next(
            s["sandbox_id"]
            for s in direct.get("/v1/sandboxes").json()
            if s["sandbox_id"] not in _core_ids(capi, owner, keep["id"])
        )
        assert direct.delete(f"/v1/sandboxes/{sandbox_id}").status_code == 204
    body = wait_status(capi, owner, lose["id"], "missing", timeout=15)
    assert body["id"] == lose["id"]
    refused = capi.post(
        f"/v1/capsules/{lose['id']}/exec", json={"cmd": "true"}, headers=owner.headers
    )
    assert refused.status_code == 409
    assert capi.delete(f"/v1/capsules/{lose['id']}", headers=owner.headers).status_code == 204
    capi.delete(f"/v1/capsules/{keep['id']}", headers=owner.headers)
    # The control plane noticed the host go and come back, and said so.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hosts = [t for t in _outbox_types(capsule_server) if t.startswith("host.")]
        if "host.down" in hosts and hosts[-1] == "host.up":
            break
        time.sleep(0.2)
    assert hosts[0] == "host.up"  # first contact
    assert "host.down" in hosts
    assert hosts[-1] == "host.up"


def _outbox_types(server: LiveServer) -> list[str]:
    url = make_url(server.settings.resolved_database_url())
    sync_url = url.set(
        drivername="sqlite" if url.drivername.startswith("sqlite") else "postgresql+psycopg"
    )
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT type FROM outbox_events ORDER BY seq")).all()
    finally:
        engine.dispose()
    return [r[0] for r in rows]


def _core_ids(capi: httpx.Client, who: Account, *wire_ids: str) -> set[str]:
    from hangar.faces.wrenn import ids

    return {ids.decode(ids.CAPSULE, w) for w in wire_ids}


@pytest.mark.parametrize("route", ["exec", "files/list", "files/mkdir"])
def test_not_running_is_409(
    capi: httpx.Client, owner: Account, capsule: Capsule, route: str
) -> None:
    capi.post(f"/v1/capsules/{capsule['id']}/pause", headers=owner.headers)
    body = {"cmd": "true"} if route == "exec" else {"path": "/tmp"}
    resp = capi.post(f"/v1/capsules/{capsule['id']}/{route}", json=body, headers=owner.headers)
    assert resp.status_code == 409
    assert error_of(resp)["code"] == "invalid_state"
