"""Processes in the sandbox: run to completion, streamed with stdin, or on a terminal.

Stdlib only, Python >= 3.9: this module runs inside sandboxes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import struct
import subprocess
import termios
import time
from typing import Any

from . import codes
from .wire import CHUNK, CONTROL, MAX_FRAME, RESULT, STARTED, STDERR, STDIN, STDOUT, Conn, OpError

EXIT_GRACE = 0.1  # seconds of silence after exit before pipes held by orphans are abandoned


def exit_code(returncode: int) -> int:
    """Shell convention: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def start(req: dict[str, Any], cfg: dict[str, Any], **kw: Any) -> subprocess.Popen[bytes]:
    """Start the requested argv in its own session (so its process group can be killed)."""
    argv = [str(a) for a in req.get("argv") or []]
    if not argv:
        raise OpError(codes.BAD_REQUEST, "empty argv")
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
