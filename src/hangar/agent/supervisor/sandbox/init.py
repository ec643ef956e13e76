"""The supervisor as the sandbox's init: its operation table, its socket, its children.

Stdlib only, Python >= 3.9: it runs under the template's own /usr/bin/python3, shipped as one
read-only zip archive (`hangar.agent.supervisor.archive`). It forks a handler per
connection; the handler drops to the sandbox user before doing anything the request asks.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import codes, files, processes
from .files import os_error
from .wire import RESULT, SOCKET_NAME, Conn, OpError, send_error

Op = Callable[[Conn, "dict[str, Any]", "dict[str, Any]"], None]

# Every operation the supervisor serves, by the name the client sends (`ping` is answered
# before privileges are dropped, and is not here).
OPS: dict[str, Op] = {
    "exec": processes.op_exec,
    "spawn": processes.op_spawn,
    "pty": processes.op_pty,
    "read": files.op_read,
    "write": files.op_write,
    "list": files.op_list,
    "mkdir": files.op_mkdir,
    "remove": files.op_remove,
}


def drop_privileges(cfg: dict[str, Any]) -> None:
    """Become the sandbox user for good (clears every capability)."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("500")  # user work is OOM-killed before the supervisor itself
    uid, gid = int(cfg["uid"]), int(cfg["gid"])
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o022)
    try:
        os.chdir(cfg["home"])
    except OSError:
        os.chdir("/")


def serve(sock: socket.socket, cfg: dict[str, Any]) -> None:
    """Handle one connection (runs in a forked child)."""
    conn = Conn(sock)
    try:
        req = conn.header()
        op = str(req.get("op"))
        if op == "ping":
            conn.send_json(RESULT, {"pid": os.getpid(), "ppid": os.getppid()})
            return
        handler = OPS.get(op)
        if handler is None:
            raise OpError(codes.BAD_REQUEST, f"unknown op {op!r}")
        drop_privileges(cfg)
        try:
            handler(conn, req, cfg)
        except OSError as exc:
            raise os_error(exc, str(req.get("path", ""))) from None
    except OpError as exc:
        send_error(conn, exc.code, str(exc))
    except Exception as exc:
        send_error(conn, codes.ERROR, f"{type(exc).__name__}: {exc}")


def ensure_user(cfg: dict[str, Any]) -> None:
    """Give templates that lack it the sandbox user (we are root inside the sandbox here)."""
    uid, gid, home = int(cfg["uid"]), int(cfg["gid"]), str(cfg["home"])
    try:
        pwd.getpwuid(uid)
    except KeyError:
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        with open("/etc/passwd", "a") as f:
            f.write(f"{cfg['user']}:x:{uid}:{gid}:Hangar user:{home}:{shell}\n")
        with open("/etc/group", "a") as f:
            f.write(f"{cfg['user']}:x:{gid}:\n")
    if not os.path.isdir(home):
        os.makedirs(home, mode=0o755)
        os.chown(home, uid, gid)


def reap(*_: Any) -> None:
    """Collect every exited child, including orphans re-parented to us as init."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    """Serve the socket forever as the sandbox's pid 1."""
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    ensure_user(cfg)
    path = os.path.join(cfg["socket_dir"], SOCKET_NAME)
    if os.path.lexists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        try:
            pid = os.fork()
        except OSError:  # pids.max or memory exhausted by the user: refuse, never die
            conn.close()
            time.sleep(0.05)
            continue
        if pid == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                serve(conn, cfg)
            finally:
                os._exit(0)
        conn.close()
