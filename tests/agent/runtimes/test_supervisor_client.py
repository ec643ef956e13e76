"""The supervisor client against a scripted fake supervisor (no sandbox needed)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hangar.agent.runtimes.base import PathError, PathNotFound
from hangar.agent.supervisor.client import SupervisorClient, SupervisorUnavailable
from hangar.agent.supervisor.sandbox import wire as proto

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def frame(kind: bytes, obj: object) -> bytes:
    payload = json.dumps(obj).encode()
    return proto.FRAME.pack(kind, len(payload)) + payload


async def serve_at(directory: Path, handler: Handler) -> asyncio.Server:
    """Bind by a relative name: the directory's absolute path is too long for sun_path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        sock.bind(proto.SOCKET_NAME)
    finally:
        os.chdir(cwd)
    return await asyncio.start_unix_server(handler, sock=sock)


async def test_long_socket_paths_and_error_mapping(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 100)
    directory.mkdir()
    requests: list[dict[str, object]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        requests.append(request)
        if request["op"] == "ping":
            writer.write(frame(proto.RESULT, {"pid": 1}))
        elif request["path"] == "/missing":
            writer.write(frame(proto.ERROR, {"code": "not_found", "message": "no"}))
        else:
            writer.write(frame(proto.ERROR, {"code": "not_dir", "message": "file"}))
        await writer.drain()
        writer.close()

    server = await serve_at(directory, handler)
    client = SupervisorClient(directory / proto.SOCKET_NAME)
    assert len(os.fsencode(client.socket_path)) > 108
    try:
        assert await client.ping() == {"pid": 1}
        with pytest.raises(PathNotFound):
            await client.list_dir("/missing")
        with pytest.raises(PathError):
            await client.list_dir("/etc/passwd")
    finally:
        server.close()
        await server.wait_closed()
    assert [r["op"] for r in requests] == ["ping", "list", "list"]
    with pytest.raises(SupervisorUnavailable):
        await SupervisorClient(tmp_path / "nothing.sock").ping()
