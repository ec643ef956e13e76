"""Two capsules of two teams, tried as an attacker would: kernel state, host accounts, templates.

Each capsule runs in a user namespace of its own, mapped to a host id range no other capsule
and no host account uses, under a seccomp filter; these tests attack exactly that.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capsules.helpers import run
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn

Capsule = dict[str, Any]
HOST_ACCOUNT = 1000  # the uid every capsule ran as before: a plain host account
FIRST_RANGE = 0x10000000

# Python inside the capsule calling libc directly, printing "<name> <result> <errno>".
CALL = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(name, *args):\n"
    "    r = getattr(libc, name)(*args)\n"
    "    print(name, r, ctypes.get_errno())\n"
)


def _capsule(capi: httpx.Client, who: Account, **body: Any) -> Capsule:
    resp = capi.post("/v1/capsules", json={"memory_mb": 256, **body}, headers=who.headers)
    assert resp.status_code == 201, resp.text
    made: Capsule = resp.json()
    return made


@pytest.fixture
def tenants(capi: httpx.Client) -> Iterator[tuple[Account, Capsule, Account, Capsule]]:
    """Team A's capsule and team B's capsule, on the same host."""
    a = Wrenn(capi).signup(name="Tenant A")
    b = Wrenn(capi).signup(name="Tenant B")
    ca, cb = _capsule(capi, a), _capsule(capi, b)
    yield a, ca, b, cb
    capi.delete(f"/v1/capsules/{ca['id']}", headers=a.headers)
    capi.delete(f"/v1/capsules/{cb['id']}", headers=b.headers)


def _py(capi: httpx.Client, who: Account, capsule: Capsule, code: str) -> str:
    out = run(capi, who, capsule["id"], "python3", args=["-c", CALL + code], timeout_sec=60)
    assert out["exit_code"] == 0, out
    stdout: str = out["stdout"]
    return stdout


def _host_pid(marker: str, timeout: float = 10.0) -> int:
    """The host pid of the capsule process whose command line carries `marker`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"python3" in cmdline:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no host process carries {marker}")


def _start_daemon(capi: httpx.Client, who: Account, capsule: Capsule, marker: str) -> int:
    """A long-lived process in the capsule (detached from the exec); its host pid."""
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    null = os.open('/dev/null', os.O_RDWR)\n"
        "    for fd in (0, 1, 2):\n"  # let go of the exec's pipes: it answers at once
        "        os.dup2(null, fd)\n"
        "    os.execvp('python3', ['python3', '-c', 'import time; time.sleep(600)', "
        f"'{marker}'])\n"
    )
    run(capi, who, capsule["id"], "python3", args=["-c", code])
    return _host_pid(marker)


def _host_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of a host process."""
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Uid:"))
    gid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Gid:"))
    return uid, gid


def _as_host_account(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command on the host as the plain account uid 1000, no groups."""
    return subprocess.run(
        ["setpriv", f"--reuid={HOST_ACCOUNT}", f"--regid={HOST_ACCOUNT}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        check=False,
    )


def test_capsules_of_two_teams_have_disjoint_host_ids(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, b, cb = tenants
    pid_a = _start_daemon(capi, a, ca, f"marker-{uuid.uuid4().hex}")
    pid_b = _start_daemon(capi, b, cb, f"marker-{uuid.uuid4().hex}")
    (uid_a, gid_a), (uid_b, gid_b) = _host_ids(pid_a), _host_ids(pid_b)
    # Inside, both are the capsule user 1000; on the host, ids of two separate ranges.
    assert run(capi, a, ca["id"], "id -u")["stdout"] == "1000\n"
    assert uid_a >= FIRST_RANGE
    assert uid_b >= FIRST_RANGE
    assert uid_a != uid_b
    assert gid_a != gid_b
    assert abs(uid_a - uid_b) >= 65536
    assert HOST_ACCOUNT not in (uid_a, uid_b)
    uid_map = run(capi, a, ca["id"], "cat /proc/self/uid_map")["stdout"].split()
    assert uid_map[0] == "0"
    assert int(uid_map[1]) >= FIRST_RANGE
    assert uid_map[2] == "65536"


def test_keyrings_are_refused(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, b, cb = tenants
    # add_key("user", "shared", "secret", 6, KEY_SPEC_USER_KEYRING)
    added = _py(capi, a, ca, "call('syscall', 248, b'user', b'shared', b'team-a-secret', 13, -4)")
    assert added.split()[1:] == ["-1", "1"], added  # EPERM
    # keyctl(KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", "shared", 0)
    searched = _py(capi, b, cb, "call('syscall', 250, 10, -4, b'user', b'shared', 0)")
    assert searched.split()[1:] == ["-1", "1"], searched


def test_inotify_instances_are_per_capsule(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, b, cb = tenants
    hog = (
        "fds = []\n"
        "while len(fds) < 100000:\n"
        "    fd = libc.inotify_init()\n"
        "    if fd < 0:\n"
        "        break\n"
        "    fds.append(fd)\n"
        "print('held', len(fds), ctypes.get_errno())\n"
        "import sys\n"
        "sys.stdout.flush()\n"
        "if os.fork() == 0:\n"  # keep them open after the exec returns, off its pipes
        "    os.setsid(); null = os.open('/dev/null', os.O_RDWR)\n"
        "    [os.dup2(null, fd) for fd in (0, 1, 2)]\n"
        "    import time; time.sleep(120)\n"
    )
    held = _py(capi, a, ca, hog).split()
    assert held[0] == "held", held
    assert held[2] == str(24), held  # stopped by EMFILE: its own limit
    assert int(held[1]) >= 1
    other = _py(capi, b, cb, "call('inotify_init')").split()
    assert int(other[1]) >= 0, other  # team B is not starved by team A


def test_host_account_cannot_reach_capsule_through_proc(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, _, _ = tenants
    run(capi, a, ca["id"], "umask 077; echo team-a-private > /home/user/secret")
    pid = _start_daemon(capi, a, ca, f"marker-{uuid.uuid4().hex}")
    read = _as_host_account("cat", f"/proc/{pid}/root/home/user/secret")
    assert read.returncode != 0, read
    assert "team-a-private" not in read.stdout
    environ = _as_host_account("cat", f"/proc/{pid}/environ")
    assert environ.returncode != 0, environ
    assert "PATH=" not in environ.stdout
    signal = _as_host_account("kill", "-0", str(pid))
    assert signal.returncode != 0, signal


def test_nested_user_namespaces_are_refused(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, _, _ = tenants
    out = run(capi, a, ca["id"], "unshare --user true; echo rc=$?")["stdout"]
    assert "rc=0" not in out, out
    # unshare(CLONE_NEWUSER) and clone3 straight from libc
    direct = _py(capi, a, ca, "call('unshare', 0x10000000)\ncall('syscall', 435, 0, 0)")
    lines = [ln.split() for ln in direct.splitlines()]
    assert lines[0][1:] == ["-1", "1"], direct  # EPERM
    assert lines[1][1:] == ["-1", "38"], direct  # clone3: ENOSYS, so libcs use clone


def test_kernel_surface_is_filtered(
    capi: httpx.Client, tenants: tuple[Account, Capsule, Account, Capsule]
) -> None:
    a, ca, _, _ = tenants
    code = (
        "call('mount', b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "call('syscall', 321, 0, 0, 0)\n"  # bpf
        "call('syscall', 298, 0, 0, 0, 0, 0)\n"  # perf_event_open
        "call('syscall', 425, 8, 0)\n"  # io_uring_setup
        "call('syscall', 313, 0, b'', 0)\n"  # finit_module
    )
    for line in _py(capi, a, ca, code).splitlines():
        assert line.split()[1:] == ["-1", "1"], line  # EPERM for each


def test_template_files_cannot_be_changed(
    capi: httpx.Client,
    tenants: tuple[Account, Capsule, Account, Capsule],
    agent: AgentProcess,
) -> None:
    a, ca, b, cb = tenants
    # The capsule user cannot write the template's system files...
    out = run(capi, a, ca["id"], "echo evil >> /etc/passwd; echo rc=$?")
    assert "rc=0" not in out["stdout"], out
    # ...and what it changes in its home lands in its own layer only.
    run(capi, a, ca["id"], "echo team-a-was-here >> /home/user/.bashrc")
    assert "team-a-was-here" not in run(capi, b, cb["id"], "cat /home/user/.bashrc")["stdout"]
    # On the host, no plain account reaches the template store or its cache.
    stores = [agent.data_dir / "templates"]
    if cache := os.environ.get("HANGAR_TEMPLATE_CACHE"):
        stores.append(Path(cache))
    for store in stores:
        rootfs = store / "minimal" / "rootfs"
        if not rootfs.is_dir():
            continue
        assert (store.stat().st_mode & 0o077) == 0, f"{store} is reachable by other accounts"
        bashrc = rootfs / "home/user/.bashrc"
        wrote = _as_host_account("sh", "-c", f"echo evil >> {bashrc}")
        assert wrote.returncode != 0, wrote
        assert "evil" not in bashrc.read_text()
        assert "team-a-was-here" not in bashrc.read_text()


def test_mountinfo_shows_no_host_paths(
    capi: httpx.Client,
    tenants: tuple[Account, Capsule, Account, Capsule],
    agent: AgentProcess,
) -> None:
    a, ca, _, _ = tenants
    info = run(capi, a, ca["id"], "cat /proc/self/mountinfo")["stdout"]
    assert "overlay" in info
    for host_path in (str(agent.data_dir), "/root", "/tmp/pytest", "/run/hangar-jails"):
        assert host_path not in info, info


def test_proc_shows_the_capsules_own_size(capi: httpx.Client) -> None:
    who = Wrenn(capi).signup(name="Sized")
    made = _capsule(capi, who, vcpus=2, memory_mb=384)
    try:
        meminfo = run(capi, who, made["id"], "cat /proc/meminfo")["stdout"]
        total = next(ln for ln in meminfo.splitlines() if ln.startswith("MemTotal:"))
        assert int(total.split()[1]) == 384 * 1024, meminfo
        cpus = run(capi, who, made["id"], "grep -c ^processor /proc/cpuinfo")["stdout"]
        assert cpus == "2\n"
    finally:
        capi.delete(f"/v1/capsules/{made['id']}", headers=who.headers)
