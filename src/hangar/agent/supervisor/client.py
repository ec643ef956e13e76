"""Agent-side client of the in-sandbox supervisor (one Unix connection per operation)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hangar.agent.runtimes.base import (
    ExecResult,
    FileEntry,
    FileType,
    InvalidState,
    PathError,
    PathNotFound,
    Process,
    ProcessEvent,
    Pty,
    RuntimeError_,
    TooLarge,
)
from hangar.agent.supervisor.sandbox import codes
from hangar.agent.supervisor.sandbox import wire as proto

SEND_CHUNK = 1024 * 1024  # frames we send stay well under the supervisor's MAX_FRAME


class SupervisorUnavailable(RuntimeError_):
    """The sandbox's supervisor could not be reached or hung up mid-operation."""

    code = "supervisor_unavailable"


class SupervisorFailure(RuntimeError_):
    """The supervisor rejected a request it could not understand or carry out."""

    code = "supervisor_error"


def _error(payload: bytes) -> RuntimeError_:
    """Turn an error frame into the runtime exception it stands for."""
    info = json.loads(payload)
    code, message = str(info.get("code")), str(info.get("message"))
    if code == codes.NOT_FOUND:
        return PathNotFound(message)
    if code == codes.TOO_LARGE:
        return TooLarge(message)
    if code in codes.PATH_ERRORS:
        return PathError(message)
    return SupervisorFailure(f"{code}: {message}")


class Channel:
    """One framed connection to the supervisor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, socket_path: Path, header: Mapping[str, Any]) -> Channel:
        """Connect and send the request header."""
        try:
            reader, writer = await _connect(socket_path)
        except OSError as exc:
            raise SupervisorUnavailable(f"supervisor socket {socket_path}: {exc}") from exc
        channel = cls(reader, writer)
        await channel.write(json.dumps(dict(header)).encode() + b"\n")
        return channel

    async def write(self, data: bytes) -> None:
        """Send raw bytes with backpressure."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise SupervisorUnavailable(f"supervisor connection lost: {exc}") from exc

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Send one frame."""
        await self.write(proto.FRAME.pack(kind, len(payload)) + payload)

    async def send_json(self, kind: bytes, obj: Mapping[str, Any]) -> None:
        """Send one JSON frame."""
        await self.send(kind, json.dumps(dict(obj)).encode())

    async def recv(self) -> tuple[bytes, bytes]:
        """Next frame; error frames are raised, a hang-up is SupervisorUnavailable."""
        try:
            head = await self.reader.readexactly(proto.FRAME.size)
            kind, size = proto.FRAME.unpack(head)
            payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise SupervisorUnavailable("supervisor closed the connection") from exc
        if kind == proto.ERROR:
            raise _error(payload)
        return kind, payload

    async def recv_json(self, expect: bytes) -> dict[str, Any]:
        """Next frame, which must be a JSON frame of kind `expect`."""
        kind, payload = await self.recv()
        if kind != expect:
            raise SupervisorFailure(f"unexpected frame {kind!r} (wanted {expect!r})")
        value: dict[str, Any] = json.loads(payload)
        return value

    async def close(self) -> None:
        """Hang up (the supervisor kills a streamed process whose client hung up)."""
        self.writer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self.writer.wait_closed()


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, going through /proc/self/fd when the path is too long for sun_path."""
    if len(os.fsencode(path)) < 100:
        return await asyncio.open_unix_connection(path)
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{dir_fd}/{path.name}")
    finally:
        os.close(dir_fd)


def _entry(raw: Mapping[str, Any]) -> FileEntry:
    """A FileEntry from the supervisor's JSON."""
    return FileEntry(**{**raw, "type": FileType(raw["type"])})


def _request(
    op: str, argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None, **extra: Any
) -> dict[str, Any]:
    """A process request header."""
    return {"op": op, "argv": list(argv), "env": dict(env or {}), "cwd": cwd, **extra}


class SupervisorProcess(Process):
    """A streamed process; its connection is its lifetime (hanging up kills it)."""

    def __init__(self, channel: Channel, pid: int) -> None:
        self.channel, self.pid, self._done = channel, pid, False

    async def events(self) -> AsyncIterator[ProcessEvent]:
        """Output as it arrives, ending with exactly one 'exit' event."""
        try:
            while True:
                try:
                    kind, payload = await self.channel.recv()
                except SupervisorUnavailable:
                    yield ProcessEvent("exit", exit_code=-1)  # lost: exit code unknown
                    return
                if kind == proto.RESULT:
                    yield ProcessEvent("exit", exit_code=int(json.loads(payload)["exit_code"]))
                    return
                yield ProcessEvent("stdout" if kind == proto.STDOUT else "stderr", payload)
        finally:
            self._done = True
            await self.channel.close()

    async def write_stdin(self, data: bytes) -> None:
        """Feed the process's stdin."""
        if self._done:
            raise InvalidState("process has exited")
        for i in range(0, len(data), SEND_CHUNK):
            await self.channel.send(proto.STDIN, data[i : i + SEND_CHUNK])

    async def close_stdin(self) -> None:
        """Close the process's stdin (it reads end-of-file)."""
        with contextlib.suppress(SupervisorUnavailable):
            await self.channel.send_json(proto.CONTROL, {"eof": True})

    async def kill(self) -> None:
        """Kill the process group; idempotent."""
        with contextlib.suppress(SupervisorUnavailable):
            await self.channel.send_json(proto.CONTROL, {"kill": True})


class SupervisorPty(Pty):
    """A process on a pseudo-terminal; output is buffered by a reader task."""

    def __init__(self, channel: Channel, pid: int) -> None:
        self.channel, self.pid = channel, pid
        self._output: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        """Move terminal output into the queue; b"" marks the end."""
        code = -1
        try:
            while True:
                kind, payload = await self.channel.recv()
                if kind == proto.RESULT:
                    code = int(json.loads(payload)["exit_code"])
                    break
                await self._output.put(payload)
        except SupervisorUnavailable:
            pass
        finally:
            if not self._exit.done():
                self._exit.set_result(code)
            await self._output.put(b"")
            await self.channel.close()

    async def read(self) -> bytes:
        """Next chunk of output; b"" once the terminal is closed."""
        data = await self._output.get()
        if not data:
            self._output.put_nowait(b"")  # every later read sees the end too
        return data

    async def write(self, data: bytes) -> None:
        """Send keystrokes."""
        if self._exit.done():
            raise InvalidState("terminal has exited")
        for i in range(0, len(data), SEND_CHUNK):
            await self.channel.send(proto.STDIN, data[i : i + SEND_CHUNK])

    async def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size (delivers SIGWINCH)."""
        await self.channel.send_json(proto.CONTROL, {"resize": [int(cols), int(rows)]})

    async def kill(self) -> None:
        """Kill the process; idempotent."""
        with contextlib.suppress(SupervisorUnavailable):
            await self.channel.send_json(proto.CONTROL, {"kill": True})

    async def wait(self) -> int:
        """Exit code once the process has ended (keep calling read() meanwhile)."""
        return await asyncio.shield(self._exit)

    async def close(self) -> None:
        """Hang up (kills the process) and stop the reader task."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.channel.close()


class SupervisorClient:
    """Talks to one sandbox's supervisor through its socket on the host."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def _call(self, header: Mapping[str, Any]) -> dict[str, Any]:
        """A request answered by a single result frame."""
        channel = await Channel.open(self.socket_path, header)
        try:
            return await channel.recv_json(proto.RESULT)
        finally:
            await channel.close()

    async def ping(self) -> dict[str, Any]:
        """Whether the supervisor answers; returns its pid as it sees itself."""
        return await self._call({"op": "ping"})

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
        output_limit: int = 16 * 1024 * 1024,
    ) -> ExecResult:
        """Run to completion; the supervisor enforces the timeout and the output cap."""
        header = _request("exec", argv, env, cwd, timeout=timeout, output_limit=output_limit)
        channel = await Channel.open(self.socket_path, header)
        out, err = bytearray(), bytearray()
        try:
            while True:
                kind, payload = await channel.recv()
                if kind == proto.RESULT:
                    break
                (out if kind == proto.STDOUT else err).extend(payload)
        finally:
            await channel.close()
        res = json.loads(payload)
        return ExecResult(
            exit_code=int(res["exit_code"]),
            stdout=bytes(out),
            stderr=bytes(err),
            timed_out=bool(res["timed_out"]),
            duration_ms=int(res["duration_ms"]),
            stdout_truncated=bool(res.get("stdout_truncated")),
            stderr_truncated=bool(res.get("stderr_truncated")),
        )

    async def _start(self, header: Mapping[str, Any]) -> tuple[Channel, int]:
        """Open a process channel and wait for its start frame."""
        channel = await Channel.open(self.socket_path, header)
        try:
            started = await channel.recv_json(proto.STARTED)
        except BaseException:
            await channel.close()
            raise
        return channel, int(started["pid"])

    async def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> SupervisorProcess:
        """Start a streamed process."""
        return SupervisorProcess(*await self._start(_request("spawn", argv, env, cwd)))

    async def open_pty(
        self,
        argv: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> SupervisorPty:
        """Start a process on a new pseudo-terminal."""
        header = _request("pty", argv, env, cwd, cols=cols, rows=rows)
        return SupervisorPty(*await self._start(header))

    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """Stream a file in chunks as the supervisor reads it."""
        channel = await Channel.open(self.socket_path, {"op": "read", "path": path})
        try:
            await channel.recv_json(proto.STARTED)
            while True:
                kind, payload = await channel.recv()
                if kind == proto.RESULT:
                    return
                yield payload
        finally:
            await channel.close()

    async def write_file(self, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> int:
        """Upload a file; past max_bytes the upload is aborted and no file is left."""
        header = {"op": "write", "path": path, "max_bytes": max_bytes}
        channel = await Channel.open(self.socket_path, header)
        try:
            await channel.recv_json(proto.STARTED)
            total = 0
            try:
                async for chunk in chunks:
                    total += len(chunk)
                    if total > max_bytes:
                        await channel.send(proto.ABORT)
                        with contextlib.suppress(RuntimeError_):
                            await channel.recv()  # answered once the temp file is gone
                        raise TooLarge(f"{path}: larger than {max_bytes} bytes")
                    for i in range(0, len(chunk), SEND_CHUNK):
                        await channel.send(proto.DATA, chunk[i : i + SEND_CHUNK])
                await channel.send(proto.END)
            except SupervisorUnavailable:
                await channel.recv()  # raises why the supervisor hung up, if it said
                raise
            return int((await channel.recv_json(proto.RESULT))["bytes"])
        finally:
            await channel.close()

    async def list_dir(self, path: str, depth: int = 1) -> list[FileEntry]:
        """Entries under a directory."""
        res = await self._call({"op": "list", "path": path, "depth": depth})
        return [_entry(e) for e in res["entries"]]

    async def make_dir(self, path: str) -> FileEntry:
        """mkdir -p."""
        return _entry((await self._call({"op": "mkdir", "path": path}))["entry"])

    async def remove(self, path: str) -> None:
        """Remove a file or a directory tree."""
        await self._call({"op": "remove", "path": path})
