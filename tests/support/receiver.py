"""A local HTTP server standing in for every notification provider's endpoint."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Received:
    """One request a provider endpoint got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Receiver:
    """Records requests by path; `fail(path, n)` makes the next n requests there answer 500."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    _failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, times: int) -> None:
        with self._lock:
            self._failures[path] = times

    def at(self, prefix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(got := self.at(prefix)) < count:
            assert time.monotonic() < deadline, f"{prefix}: {len(got)} of {count} requests"
            time.sleep(0.05)
        return got

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        path = request.url.path
        with self._lock:
            self.requests.append(Received(request.method, path, dict(request.headers), body))
            key = next((p for p in self._failures if path.startswith(p)), None)
            if key is not None and self._failures[key] > 0:
                self._failures[key] -= 1
                return JSONResponse({"error": "receiver down"}, status_code=500)
        if "/_matrix/" in path:
            return JSONResponse({"event_id": "$event"})
        if "/sendMessage" in path:
            return JSONResponse({"ok": True, "result": {}})
        return JSONResponse({"ok": True})


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(
        routes=[Route("/{path:path}", receiver._handle, methods=["GET", "POST", "PUT"])]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
