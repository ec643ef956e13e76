"""A runtime without isolation, for unit tests of the agent and control plane only.

Each "sandbox" is a directory; commands run as ordinary host subprocesses whose paths are
mapped into that directory. It must never be offered to users: it isolates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from pathlib import Path

from hangar.agent.runtimes.base import (
    ExecResult,
    FileEntry,
    FileType,
    Firewall,
    InvalidState,
    PathError,
    PathNotFound,
    Process,
    ProcessEvent,
    Pty,
    Runtime,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
    TooLarge,
    Usage,
)


class _FakeProcess(Process):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    async def events(self) -> AsyncIterator[ProcessEvent]:
        queue: asyncio.Queue[ProcessEvent | None] = asyncio.Queue()

        async def pump(kind: str, stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                await queue.put(ProcessEvent(kind, chunk))
            await queue.put(None)

        tasks = [
            asyncio.create_task(pump("stdout", self._proc.stdout)),
            asyncio.create_task(pump("stderr", self._proc.stderr)),
        ]
        done = 0
        while done < 2:
            event = await queue.get()
            if event is None:
                done += 1
            else:
                yield event
        await asyncio.gather(*tasks)
        yield ProcessEvent("exit", exit_code=await self._proc.wait())

    async def write_stdin(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()


class FakeRuntime(Runtime):
    """Directories and plain subprocesses standing in for sandboxes."""

    name = "fake"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._state: dict[str, SandboxState] = {}
        # What a real runtime would have enforced, for tests to look at.
        self.specs: dict[str, SandboxSpec] = {}
        self.firewalls: dict[str, Firewall] = {}

    def _dir(self, sandbox_id: str) -> Path:
        if sandbox_id not in self._state:
            raise SandboxNotFound(sandbox_id)
        return self.root / sandbox_id

    def _running(self, sandbox_id: str) -> Path:
        d = self._dir(sandbox_id)
        if self._state[sandbox_id] is not SandboxState.RUNNING:
            raise InvalidState(f"sandbox {sandbox_id} is {self._state[sandbox_id]}")
        return d

    def _host_path(self, sandbox_id: str, path: str) -> Path:
        if not path.startswith("/") or "\0" in path:
            raise PathError(f"path must be absolute: {path!r}")
        return self._running(sandbox_id) / os.path.normpath(path).lstrip("/")

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        d = self.root / spec.sandbox_id
        shutil.copytree(spec.rootfs, d, symlinks=True, dirs_exist_ok=True)
        self._state[spec.sandbox_id] = SandboxState.RUNNING
        self.specs[spec.sandbox_id] = spec
        if spec.network is not None:
            self.firewalls[spec.sandbox_id] = spec.network.firewall
        ipv6 = spec.network.ipv6 if spec.network else ""
        return SandboxInfo(spec.sandbox_id, SandboxState.RUNNING, ipv6=ipv6)

    async def recover(self) -> list[SandboxInfo]:
        return [SandboxInfo(i, s) for i, s in self._state.items()]

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        self._dir(sandbox_id)
        return SandboxInfo(sandbox_id, self._state[sandbox_id])

    async def destroy(self, sandbox_id: str) -> None:
        if self._state.pop(sandbox_id, None) is not None:
            shutil.rmtree(self.root / sandbox_id, ignore_errors=True)
        self.specs.pop(sandbox_id, None)
        self.firewalls.pop(sandbox_id, None)

    async def exec(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
        output_limit: int = 16 * 1024 * 1024,
    ) -> ExecResult:
        d = self._running(sandbox_id)
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=d,
            env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
        return ExecResult(
            exit_code=proc.returncode if proc.returncode is not None else -1,
            stdout=out[:output_limit],
            stderr=err[:output_limit],
            timed_out=timed_out,
            duration_ms=int((time.monotonic() - started) * 1000),
            stdout_truncated=len(out) > output_limit,
            stderr_truncated=len(err) > output_limit,
        )

    async def spawn(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Process:
        d = self._running(sandbox_id)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=d,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return _FakeProcess(proc)

    async def open_pty(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Pty:
        raise InvalidState("the fake runtime has no terminals")

    async def read_file(self, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        p = self._host_path(sandbox_id, path)
        if not p.is_file():
            raise PathNotFound(path)
        with p.open("rb") as f:
            while chunk := f.read(65536):
                yield chunk

    async def write_file(
        self, sandbox_id: str, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> int:
        p = self._host_path(sandbox_id, path)
        p.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        tmp = p.with_name(p.name + ".part")
        with tmp.open("wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    f.close()
                    tmp.unlink()
                    raise TooLarge(f"file exceeds {max_bytes} bytes")
                f.write(chunk)
        tmp.replace(p)
        return size

    def _entry(self, sandbox_id: str, host: Path) -> FileEntry:
        st = host.lstat()
        base = self.root / sandbox_id
        kind = (
            FileType.SYMLINK
            if stat.S_ISLNK(st.st_mode)
            else FileType.DIRECTORY
            if stat.S_ISDIR(st.st_mode)
            else FileType.FILE
        )
        return FileEntry(
            name=host.name,
            path="/" + str(host.relative_to(base)),
            type=kind,
            size=st.st_size,
            mode=st.st_mode & 0o7777,
            permissions=stat.filemode(st.st_mode),
            owner=str(st.st_uid),
            group=str(st.st_gid),
            modified_at=int(st.st_mtime),
            symlink_target=os.readlink(host) if kind is FileType.SYMLINK else None,
        )

    async def list_dir(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        root = self._host_path(sandbox_id, path)
        if not root.is_dir():
            raise PathNotFound(path)
        out: list[FileEntry] = []

        def walk(d: Path, level: int) -> None:
            for child in sorted(d.iterdir()):
                out.append(self._entry(sandbox_id, child))
                if level < depth and child.is_dir() and not child.is_symlink():
                    walk(child, level + 1)

        walk(root, 1)
        return out

    async def make_dir(self, sandbox_id: str, path: str) -> FileEntry:
        p = self._host_path(sandbox_id, path)
        p.mkdir(parents=True, exist_ok=True)
        return self._entry(sandbox_id, p)

    async def remove(self, sandbox_id: str, path: str) -> None:
        p = self._host_path(sandbox_id, path)
        if not p.exists() and not p.is_symlink():
            raise PathNotFound(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    async def pause(self, sandbox_id: str) -> None:
        self._running(sandbox_id)
        self._state[sandbox_id] = SandboxState.PAUSED

    async def resume(self, sandbox_id: str) -> None:
        self._dir(sandbox_id)
        if self._state[sandbox_id] is not SandboxState.PAUSED:
            raise InvalidState(f"sandbox {sandbox_id} is not paused")
        self._state[sandbox_id] = SandboxState.RUNNING

    async def snapshot(self, sandbox_id: str, dest: Path) -> int:
        shutil.copytree(self._dir(sandbox_id), dest, symlinks=True)
        return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())

    async def usage(self, sandbox_id: str) -> Usage:
        self._dir(sandbox_id)
        return Usage(cpu_ns=0, mem_bytes=0, disk_bytes=0)

    async def set_firewall(self, sandbox_id: str, firewall: Firewall) -> None:
        """Only records the policy: nothing is enforced here."""
        self._dir(sandbox_id)
        spec = self.specs.get(sandbox_id)
        if spec is None or spec.network is None:
            raise InvalidState(f"sandbox {sandbox_id} has no network")
        self.firewalls[sandbox_id] = firewall
