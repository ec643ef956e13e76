"""PTY sessions that outlive their WebSocket: tagged, replayable, reaped when idle."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

from hangar.agent.runtimes.base import Pty
from hangar.agentproto.streams import Error, Exit

# What a watcher is given: an agent stream message, or `output` with its raw `bytes` (only
# encoded when sent, so a backlog of it stays raw).
Message = dict[str, object]


@dataclass
class PtySession:
    """One terminal process and whoever is watching it."""

    tag: str
    sandbox_id: str
    pty: Pty
    replay_limit: int
    last_activity: float = field(default_factory=time.monotonic)
    exit_code: int | None = None
    _backlog: bytearray = field(default_factory=bytearray)
    _watcher: asyncio.Queue[Message] | None = None
    _reader: asyncio.Task[None] | None = None

    def touch(self) -> None:
        """Input, resize or a reconnect counts as activity."""
        self.last_activity = time.monotonic()

    def attach(self) -> asyncio.Queue[Message]:
        """Become the (single) watcher; replays output produced while nobody watched."""
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=256)
        if self._watcher is not None:
            # A newer connection wins; the old one is told it was replaced.
            with contextlib.suppress(asyncio.QueueFull):
                self._watcher.put_nowait(Error(data="replaced", fatal=True).dump())
        if self._backlog:
            queue.put_nowait({"type": "output", "bytes": bytes(self._backlog)})
            self._backlog.clear()
        if self.exit_code is not None:
            queue.put_nowait(Exit(exit_code=self.exit_code).dump())
        self._watcher = queue
        self.touch()
        return queue

    def detach(self, queue: asyncio.Queue[Message]) -> None:
        """The watcher left; output now accumulates in the bounded backlog."""
        if self._watcher is queue:
            self._watcher = None

    def _deliver(self, message: Message) -> None:
        watcher = self._watcher
        if watcher is not None:
            try:
                watcher.put_nowait(message)
                return
            except asyncio.QueueFull:
                # A watcher that cannot keep up is dropped rather than stalling the terminal.
                self._watcher = None
        data = message.get("bytes")
        if isinstance(data, bytes):
            self._backlog += data
            overflow = len(self._backlog) - self.replay_limit
            if overflow > 0:
                del self._backlog[:overflow]

    async def pump(self) -> None:
        """Copy terminal output to the watcher (or the backlog) until the process ends."""
        while chunk := await self.pty.read():
            self._deliver({"type": "output", "bytes": chunk})
        self.exit_code = await self.pty.wait()
        if self._watcher is not None:
            self._watcher.put_nowait(Exit(exit_code=self.exit_code).dump())


class PtyRegistry:
    """All PTY sessions of an agent."""

    def __init__(self, *, idle_timeout: float = 120.0, replay_limit: int = 256 * 1024) -> None:
        self.idle_timeout = idle_timeout
        self.replay_limit = replay_limit
        self._sessions: dict[str, PtySession] = {}

    def add(self, sandbox_id: str, pty: Pty) -> PtySession:
        """Register a new terminal and start pumping its output."""
        tag = f"pty-{secrets.token_hex(4)}"
        session = PtySession(tag, sandbox_id, pty, self.replay_limit)
        session._reader = asyncio.create_task(session.pump(), name=f"pty:{tag}")
        self._sessions[tag] = session
        return session

    def get(self, sandbox_id: str, tag: str) -> PtySession | None:
        """A session of that sandbox, if it still exists."""
        session = self._sessions.get(tag)
        return session if session is not None and session.sandbox_id == sandbox_id else None

    async def close(self, session: PtySession) -> None:
        """Kill a session's process and forget it."""
        self._sessions.pop(session.tag, None)
        with contextlib.suppress(Exception):
            await session.pty.kill()

    async def close_sandbox(self, sandbox_id: str) -> None:
        """Forget every session of a destroyed sandbox."""
        for session in [s for s in self._sessions.values() if s.sandbox_id == sandbox_id]:
            await self.close(session)

    async def reap(self) -> None:
        """Kill sessions idle past the timeout (and finished ones nobody came back for)."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if now - session.last_activity > self.idle_timeout:
                if session._watcher is not None:
                    with contextlib.suppress(asyncio.QueueFull):
                        session._watcher.put_nowait(
                            Error(data="closed after inactivity", fatal=True).dump()
                        )
                await self.close(session)
