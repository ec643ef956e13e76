"""What the agent's routes ask of a running sandbox: processes, terminals and files.

Routes go through these, never straight to the runtime: each checks that the sandbox exists
and runs before the runtime is asked, so every route refuses a paused or unknown sandbox the
same way.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence

from hangar.agent.runtimes.base import ExecResult, FileEntry, Process, Pty, Runtime


class Workloads(abc.ABC):
    """Exec, PTYs and files of the agent's running sandboxes."""

    runtime: Runtime

    @abc.abstractmethod
    def require_running(self, sandbox_id: str) -> None:
        """Raise unless the sandbox exists and runs."""

    async def exec(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        """Run a command to completion."""
        self.require_running(sandbox_id)
        return await self.runtime.exec(sandbox_id, argv, env=env, cwd=cwd, timeout=timeout)

    async def spawn(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Process:
        """Start a streamed process."""
        self.require_running(sandbox_id)
        return await self.runtime.spawn(sandbox_id, argv, env=env, cwd=cwd)

    async def open_pty(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        cols: int,
        rows: int,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Pty:
        """Start a process on a new terminal."""
        self.require_running(sandbox_id)
        return await self.runtime.open_pty(sandbox_id, argv, cols=cols, rows=rows, env=env, cwd=cwd)

    def read_file(self, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        """A file's bytes, in chunks."""
        self.require_running(sandbox_id)
        return self.runtime.read_file(sandbox_id, path)

    async def write_file(
        self, sandbox_id: str, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> int:
        """Write a file from chunks; its size."""
        self.require_running(sandbox_id)
        return await self.runtime.write_file(sandbox_id, path, chunks, max_bytes=max_bytes)

    async def list_dir(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        """Entries under a directory."""
        self.require_running(sandbox_id)
        return await self.runtime.list_dir(sandbox_id, path, depth)

    async def make_dir(self, sandbox_id: str, path: str) -> FileEntry:
        """Create a directory and its parents."""
        self.require_running(sandbox_id)
        return await self.runtime.make_dir(sandbox_id, path)

    async def remove(self, sandbox_id: str, path: str) -> None:
        """Remove a file or a directory tree."""
        self.require_running(sandbox_id)
        await self.runtime.remove(sandbox_id, path)
