#!/usr/bin/python3
"""Hangar in-sandbox supervisor: runs as the sandbox's init and serves one Unix socket.

Stdlib only and Python >= 3.9: it runs under the template's own /usr/bin/python3.
Protocol, one connection per operation: the client sends one JSON header line
({"op": ...}), then both sides exchange frames of 1 type byte + 4-byte big-endian length
+ payload. The supervisor forks a handler per connection; the handler drops to the
sandbox user before doing anything the request asks for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import json
import os
import pwd
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
from typing import Any

FRAME = struct.Struct(">cI")
MAX_FRAME = 8 * 1024 * 1024
CHUNK = 256 * 1024
MAX_HEADER = 1024 * 1024
# Frame types. Client -> supervisor: stdin/upload data, control, end, abort.
STDIN, DATA, CONTROL, END, ABORT = b"I", b"D", b"C", b"Z", b"A"
# Supervisor -> client: started, stdout, stderr, final result, error.
STARTED, STDOUT, STDERR, RESULT, ERROR = b"S", b"O", b"E", b"X", b"!"
SOCKET_NAME = "supervisor.sock"
EXIT_GRACE = 0.1  # seconds of silence after exit before pipes held by orphans are abandoned


class OpError(Exception):
    """A request failed with a stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def os_error(exc: OSError, path: str) -> OpError:
    """Map an OSError to the protocol's error codes."""
    codes = {
        errno.ENOENT: "not_found",
        errno.ENOTDIR: "not_dir",
        errno.EISDIR: "is_dir",
        errno.EACCES: "permission",
        errno.EPERM: "permission",
        errno.EEXIST: "exists",
        errno.ENOTEMPTY: "not_empty",
    }
    return OpError(codes.get(exc.errno or 0, "error"), f"{path}: {exc.strerror or exc}")


class Conn:
    """Framed I/O over one accepted socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def header(self) -> dict[str, Any]:
        """Read the JSON request line."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_HEADER or not self.fill():
                raise OpError("bad_request", "no request header")
        line, self.buf = self.buf.split(b"\n", 1)
        req = json.loads(line)
        if not isinstance(req, dict):
            raise OpError("bad_request", "request header must be an object")
        return req

    def fill(self) -> bool:
        """Receive more bytes; False on end of stream."""
        try:
            data = self.sock.recv(CHUNK)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self) -> tuple[bytes, bytes] | None:
        """One complete frame from the buffer, if there is one."""
        if len(self.buf) < FRAME.size:
            return None
        kind, size = FRAME.unpack_from(self.buf)
        if size > MAX_FRAME:
            raise OpError("bad_request", "frame too large")
        end = FRAME.size + size
        if len(self.buf) < end:
            return None
        frame = (kind, self.buf[FRAME.size : end])
        self.buf = self.buf[end:]
        return frame

    def frames(self) -> list[tuple[bytes, bytes]]:
        """Every complete frame already buffered."""
        out = []
        frame = self.take()
        while frame is not None:
            out.append(frame)
            frame = self.take()
        return out

    def frame(self) -> tuple[bytes, bytes] | None:
        """Block for the next frame; None on end of stream."""
        frame = self.take()
        while frame is None:
            if not self.fill():
                return None
            frame = self.take()
        return frame

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Send one frame."""
        self.sock.sendall(FRAME.pack(kind, len(payload)) + payload)

    def send_json(self, kind: bytes, obj: dict[str, Any]) -> None:
        """Send one JSON frame."""
        self.send(kind, json.dumps(obj).encode())


# ---------------------------------------------------------------- processes


def exit_code(returncode: int) -> int:
    """Shell convention: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def start(req: dict[str, Any], cfg: dict[str, Any], **kw: Any) -> subprocess.Popen[bytes]:
    """Start the requested argv in its own session (so its process group can be killed)."""
    argv = [str(a) for a in req.get("argv") or []]
    if not argv:
        raise OpError("bad_request", "empty argv")
    env = dict(cfg.get("env") or {})
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    cwd = req.get("cwd") or cfg.get("home") or "/"
    # argv list, no shell; it runs as the sandbox user inside the sandbox's namespaces.
    return subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True, **kw)  # noqa: S603


def killpg(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group and whatever else is left in its session (a shell's jobs)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                session = int(f.read().rsplit(")", 1)[1].split()[3])
            if session == pid:
                os.kill(int(entry), sig)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not ours to signal


class Pump:
    """Relays a process's output, stdin and control frames until it ends."""

    def __init__(
        self,
        conn: Conn,
        proc: subprocess.Popen[bytes],
        outs: dict[int, bytes],
        in_fd: int | None,
        tty: bool = False,
        limit: int | None = None,
    ) -> None:
        self.conn, self.proc, self.outs, self.in_fd, self.tty = conn, proc, outs, in_fd, tty
        self.limit, self.open_outs, self.pending = limit, set(outs), bytearray()
        self.sent = {STDOUT: 0, STDERR: 0}
        self.truncated = {STDOUT: False, STDERR: False}
        self.sel, self.sock_open = selectors.DefaultSelector(), True
        self.masks: dict[int, int] = {}
        for fd in [*outs, *([in_fd] if in_fd is not None else [])]:
            os.set_blocking(fd, False)

    def interest(self) -> None:
        """Register exactly the fds that have something to do."""
        want = dict.fromkeys(self.open_outs, selectors.EVENT_READ)
        if self.sock_open and len(self.pending) < MAX_FRAME:  # backpressure on stdin floods
            want[self.conn.sock.fileno()] = selectors.EVENT_READ
        if self.in_fd is not None and self.pending:
            want[self.in_fd] = want.get(self.in_fd, 0) | selectors.EVENT_WRITE
        for fd in set(self.masks) | set(want):
            old, new = self.masks.get(fd, 0), want.get(fd, 0)
            if old and not new:
                self.sel.unregister(fd)
            elif new and not old:
                self.sel.register(fd, new)
            elif old != new:
                self.sel.modify(fd, new)
        self.masks = want

    def run(self, deadline: float | None = None) -> bool:
        """Pump until the process exits and its output closes or goes quiet; True if timed out."""
        timed_out, exited_at = False, None
        while True:
            now = time.monotonic()
            if exited_at is None and self.proc.poll() is not None:
                exited_at = now
            if exited_at is not None and not self.open_outs:
                break
            if deadline is not None and now >= deadline:
                timed_out, deadline = True, None
                killpg(self.proc.pid)
            wait = 1.0 if deadline is None else max(0.0, deadline - now)
            if exited_at is not None:  # orphans may hold the pipes open forever
                wait = min(wait, EXIT_GRACE)
            elif not self.open_outs:  # output closed early: poll for the exit instead
                wait = min(wait, 0.05)
            self.interest()
            ready = self.sel.select(wait)
            if not ready and exited_at is not None:
                break
            for key, mask in ready:
                if key.fd == self.conn.sock.fileno():
                    self.on_sock()
                    continue
                if mask & selectors.EVENT_WRITE:
                    self.flush()
                if mask & selectors.EVENT_READ and key.fd in self.open_outs:
                    self.on_output(key.fd)
        self.sel.close()
        self.proc.wait()
        return timed_out

    def on_sock(self) -> None:
        """Client frames: stdin, kill, resize, eof; a vanished client kills the process."""
        if not self.conn.fill():
            killpg(self.proc.pid)
            self.sock_open = False
            return
        for kind, payload in self.conn.frames():
            if kind == STDIN and self.in_fd is not None:
                self.pending.extend(payload)
                self.flush()
            elif kind == CONTROL:
                self.on_control(json.loads(payload or b"{}"))

    def on_control(self, msg: dict[str, Any]) -> None:
        """Apply one control message."""
        if msg.get("kill"):
            killpg(self.proc.pid, int(msg.get("signal") or signal.SIGKILL))
        if msg.get("resize") and self.tty and self.in_fd is not None:
            cols, rows = (int(v) for v in msg["resize"])
            fcntl.ioctl(self.in_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if msg.get("eof") and not self.tty and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.in_fd = None
            self.pending.clear()

    def flush(self) -> None:
        """Write as much pending input as the process takes without blocking."""
        try:
            while self.pending and self.in_fd is not None:
                del self.pending[: os.write(self.in_fd, self.pending)]
        except BlockingIOError:
            pass
        except OSError:  # the reader is gone; drop what it will never read
            self.pending.clear()

    def on_output(self, fd: int) -> None:
        """Forward a chunk of output, honouring the output cap."""
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO from a pty master once the terminal is gone
            data = b""
        if not data:
            self.open_outs.discard(fd)
            if fd == self.in_fd:
                self.in_fd = None
            return
        kind = self.outs[fd]
        if self.limit is not None:
            room = max(0, self.limit - self.sent[kind])
            self.truncated[kind] = self.truncated[kind] or len(data) > room
            data = data[:room]
        if data:
            self.sent[kind] += len(data)
            self.conn.send(kind, data)


def op_exec(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Run to completion with a timeout and an output cap."""
    began = time.monotonic()
    pipe = subprocess.PIPE
    try:
        proc = start(req, cfg, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe)
    except OSError as exc:
        conn.send(STDERR, f"hangar: cannot run {req.get('argv')}: {exc}\n".encode())
        conn.send_json(RESULT, {"exit_code": 127, "timed_out": False, "duration_ms": 0})
        return
    assert proc.stdout is not None
    assert proc.stderr is not None
    outs = {proc.stdout.fileno(): STDOUT, proc.stderr.fileno(): STDERR}
    limit = int(req.get("output_limit", 16 * 1024 * 1024))
    deadline = began + float(req.get("timeout", 30.0))
    pump = Pump(conn, proc, outs, None, limit=limit)
    timed_out = pump.run(deadline)
    truncated = pump.truncated
    conn.send_json(
        RESULT,
        {
            "exit_code": exit_code(proc.returncode),
            "timed_out": timed_out,
            "duration_ms": int((time.monotonic() - began) * 1000),
            "stdout_truncated": truncated[STDOUT],
            "stderr_truncated": truncated[STDERR],
        },
    )


def op_spawn(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """A streamed process with stdin; killed if the client disconnects."""
    pipe = subprocess.PIPE
    streamed(conn, req, cfg, None, stdin=pipe, stdout=pipe, stderr=pipe)


def op_pty(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """A process on a fresh pseudo-terminal that becomes its controlling terminal."""
    master, slave = os.openpty()
    size = struct.pack("HHHH", int(req.get("rows", 24)), int(req.get("cols", 80)), 0, 0)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    set_ctty = lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # noqa: E731
    try:
        streamed(
            conn,
            req,
            cfg,
            master,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=set_ctty,
            close_fds=True,
        )
    finally:
        os.close(master)


def streamed(
    conn: Conn, req: dict[str, Any], cfg: dict[str, Any], tty: int | None, **kw: Any
) -> None:
    """Start, report the pid, pump until exit, report the exit code (127: could not start)."""
    try:
        proc = start(req, cfg, **kw)
    except OSError as exc:
        conn.send_json(STARTED, {"pid": 0})
        conn.send(STDERR if tty is None else STDOUT, f"hangar: cannot run: {exc}\r\n".encode())
        conn.send_json(RESULT, {"exit_code": 127})
        return
    finally:
        if tty is not None:
            os.close(kw["stdin"])  # our copy of the terminal's slave end
    conn.send_json(STARTED, {"pid": proc.pid})
    if tty is None:
        assert proc.stdin and proc.stdout and proc.stderr  # noqa: PT018
        outs = {proc.stdout.fileno(): STDOUT, proc.stderr.fileno(): STDERR}
        Pump(conn, proc, outs, proc.stdin.fileno()).run()
    else:
        Pump(conn, proc, {tty: STDOUT}, tty, tty=True).run()
    conn.send_json(RESULT, {"exit_code": exit_code(proc.returncode)})


# ---------------------------------------------------------------- files


def entry(path: str, st: os.stat_result | None = None) -> dict[str, Any]:
    """Describe one path (lstat: symlinks are reported, not followed)."""
    st = st or os.lstat(path)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    target = None
    if stat.S_ISLNK(st.st_mode):
        kind, target = "symlink", os.readlink(path)
    return {
        "name": os.path.basename(path) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": st.st_mode & 0o7777,
        "permissions": stat.filemode(st.st_mode),
        "owner": name_of(pwd.getpwuid, st.st_uid),
        "group": name_of(grp.getgrgid, st.st_gid),
        "modified_at": int(st.st_mtime),
        "symlink_target": target,
    }


def name_of(lookup: Any, ident: int) -> str:
    """A user's or group's name, or the number when the sandbox does not know it."""
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def op_read(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Stream a regular file in chunks."""
    path = req["path"]
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            code = "is_dir" if stat.S_ISDIR(st.st_mode) else "not_file"
            raise OpError(code, f"{path}: not a regular file")
        conn.send_json(STARTED, {"size": st.st_size})
        while True:
            data = f.read(CHUNK)
            if not data:
                break
            conn.send(DATA, data)
    conn.send_json(RESULT, {})


def op_write(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Receive a file into a temp sibling and rename it in only when complete."""
    path, max_bytes = req["path"], int(req["max_bytes"])
    parent, base = os.path.split(os.path.normpath(path))
    if not base:
        raise OpError("is_dir", f"{path}: is a directory")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, parent) from None
    if os.path.isdir(path):
        raise OpError("is_dir", f"{path}: is a directory")
    tmp = os.path.join(parent, f".{base}.hangar-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    total, done = 0, False
    try:
        conn.send_json(STARTED, {})
        while True:
            frame = conn.frame()
            if frame is None or frame[0] == ABORT:
                raise OpError("aborted", "upload aborted")
            kind, payload = frame
            if kind == END:
                break
            total += len(payload)
            if total > max_bytes:
                raise OpError("too_large", f"{path}: larger than {max_bytes} bytes")
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        os.rename(tmp, path)
        done = True
    finally:
        os.close(fd)
        if not done:
            os.unlink(tmp)
    conn.send_json(RESULT, {"bytes": total})


def op_list(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Entries under a directory, recursing `depth` levels without following symlinks."""
    path = os.path.normpath(req["path"])
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise OpError("not_dir", f"{path}: not a directory")
    out: list[dict[str, Any]] = []

    def walk(directory: str, level: int) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            out.append(entry(item.path, item.stat(follow_symlinks=False)))
            if level > 1 and item.is_dir(follow_symlinks=False):
                with contextlib.suppress(PermissionError):  # listed, but not entered
                    walk(item.path, level - 1)

    walk(path, max(1, int(req.get("depth", 1))))
    conn.send_json(RESULT, {"entries": out})


def op_mkdir(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """mkdir -p, reporting the directory's entry."""
    path = os.path.normpath(req["path"])
    os.makedirs(path, exist_ok=True)
    conn.send_json(RESULT, {"entry": entry(path)})


def op_remove(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Remove a file, symlink or whole directory tree."""
    path = os.path.normpath(req["path"])
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    conn.send_json(RESULT, {})


OPS = {name[3:]: fn for name, fn in list(globals().items()) if name.startswith("op_")}


# ---------------------------------------------------------------- serving


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
            raise OpError("bad_request", f"unknown op {op!r}")
        drop_privileges(cfg)
        try:
            handler(conn, req, cfg)
        except OSError as exc:
            raise os_error(exc, str(req.get("path", ""))) from None
    except OpError as exc:
        send_error(conn, exc.code, str(exc))
    except Exception as exc:
        send_error(conn, "error", f"{type(exc).__name__}: {exc}")


def send_error(conn: Conn, code: str, message: str) -> None:
    """Report a failure, if the client is still there to hear it."""
    with contextlib.suppress(OSError):
        conn.send_json(ERROR, {"code": code, "message": message})


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


if __name__ == "__main__":
    main()
