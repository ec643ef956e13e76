"""File operations in a real jail sandbox, through the supervisor."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hangar.agent.runtimes.base import FileType, PathError, PathNotFound, TooLarge
from hangar.agent.runtimes.jail import JailRuntime

MiB = 1024 * 1024


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(runtime: JailRuntime, sid: str, path: str) -> bytes:
    return b"".join([chunk async for chunk in runtime.read_file(sid, path)])


async def test_write_then_read_small(runtime: JailRuntime, sandbox: str) -> None:
    n = await runtime.write_file(
        sandbox, "/home/user/new/dir/hello.txt", chunks_of(b"hello ", b"world"), max_bytes=100
    )
    assert n == 11
    assert await read_all(runtime, sandbox, "/home/user/new/dir/hello.txt") == b"hello world"
    owner = await runtime.exec(sandbox, ["stat", "-c", "%u %a", "/home/user/new/dir/hello.txt"])
    assert owner.stdout == b"1000 644\n"
    await runtime.write_file(
        sandbox, "/home/user/new/dir/hello.txt", chunks_of(b"x"), max_bytes=100
    )
    assert await read_all(runtime, sandbox, "/home/user/new/dir/hello.txt") == b"x"


async def test_large_file_is_streamed(runtime: JailRuntime, sandbox: str) -> None:
    block = hashlib.sha256(b"seed").digest() * (MiB // 32)
    sent = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        for i in range(50):
            chunk = bytes([i]) + block[1:]
            sent.update(chunk)
            yield chunk

    size = await runtime.write_file(sandbox, "/tmp/big.bin", produce(), max_bytes=64 * MiB)
    assert size == 50 * MiB
    got, biggest, total = hashlib.sha256(), 0, 0
    async for chunk in runtime.read_file(sandbox, "/tmp/big.bin"):
        got.update(chunk)
        biggest, total = max(biggest, len(chunk)), total + len(chunk)
    assert total == 50 * MiB
    assert got.hexdigest() == sent.hexdigest()
    assert biggest <= MiB  # delivered in chunks, never as one buffer
    await runtime.remove(sandbox, "/tmp/big.bin")


async def test_too_large_leaves_no_file(runtime: JailRuntime, sandbox: str) -> None:
    with pytest.raises(TooLarge):
        await runtime.write_file(
            sandbox,
            "/home/user/up/too-big",
            chunks_of(b"a" * 1000, b"b" * 1000, b"c" * 1000),
            max_bytes=1500,
        )
    names = [e.name for e in await runtime.list_dir(sandbox, "/home/user/up")]
    assert names == []  # neither the file nor its temporary sibling


async def test_list_depth_mkdir_and_remove(runtime: JailRuntime, sandbox: str) -> None:
    entry = await runtime.make_dir(sandbox, "/home/user/tree/a/b/c")
    assert (entry.type, entry.path, entry.owner) == (
        FileType.DIRECTORY,
        "/home/user/tree/a/b/c",
        "user",
    )
    assert (await runtime.make_dir(sandbox, "/home/user/tree/a")).name == "a"  # mkdir -p
    await runtime.write_file(sandbox, "/home/user/tree/f.txt", chunks_of(b"12345"), max_bytes=9)
    await runtime.exec(sandbox, ["ln", "-s", "a/b", "/home/user/tree/link"])

    top = await runtime.list_dir(sandbox, "/home/user/tree")
    assert [(e.name, e.type) for e in top] == [
        ("a", FileType.DIRECTORY),
        ("f.txt", FileType.FILE),
        ("link", FileType.SYMLINK),
    ]
    f = top[1]
    assert (f.size, f.mode, f.permissions, f.group) == (5, 0o644, "-rw-r--r--", "user")
    assert f.modified_at > 0
    assert top[2].symlink_target == "a/b"
    assert await runtime.list_dir(sandbox, "/home/user/tree", depth=0) == top
    deep = [e.path for e in await runtime.list_dir(sandbox, "/home/user/tree", depth=3)]
    assert "/home/user/tree/a/b" in deep
    assert "/home/user/tree/a/b/c" in deep
    assert not any(p.startswith("/home/user/tree/link/") for p in deep)  # lstat: not followed
    two = [e.path for e in await runtime.list_dir(sandbox, "/home/user/tree", depth=2)]
    assert "/home/user/tree/a/b" in two
    assert "/home/user/tree/a/b/c" not in two

    await runtime.remove(sandbox, "/home/user/tree/f.txt")
    await runtime.remove(sandbox, "/home/user/tree")
    with pytest.raises(PathNotFound):
        await runtime.list_dir(sandbox, "/home/user/tree")
    with pytest.raises(PathNotFound):
        await runtime.remove(sandbox, "/home/user/tree")


async def test_errors(runtime: JailRuntime, sandbox: str) -> None:
    with pytest.raises(PathNotFound):
        await read_all(runtime, sandbox, "/nope/nothing")
    with pytest.raises(PathError):
        await read_all(runtime, sandbox, "/home")  # a directory
    with pytest.raises(PathError):
        await runtime.list_dir(sandbox, "/etc/passwd")  # not a directory
    with pytest.raises(PathError):  # permission: files are written as the sandbox user
        await runtime.write_file(sandbox, "/etc/hacked", chunks_of(b"x"), max_bytes=10)
    with pytest.raises(PathError):
        await runtime.make_dir(sandbox, "/etc/passwd/sub")
    for bad in ("relative/path", "/with\0nul", ""):
        with pytest.raises(PathError):
            await runtime.list_dir(sandbox, bad)
        with pytest.raises(PathError):
            await read_all(runtime, sandbox, bad)


async def test_paths_stay_inside_the_sandbox(runtime: JailRuntime, sandbox: str) -> None:
    name = f"escape-{uuid.uuid4().hex[:8]}"
    await runtime.write_file(
        sandbox, f"/../../tmp/../../tmp/{name}", chunks_of(b"in"), max_bytes=10
    )
    assert not Path(f"/tmp/{name}").exists()
    assert await read_all(runtime, sandbox, f"/tmp/{name}") == b"in"
    assert (runtime.layout(sandbox).upper / "tmp" / name).read_bytes() == b"in"
    await runtime.exec(sandbox, ["ln", "-s", "/", "/tmp/root-link"])
    await runtime.write_file(
        sandbox, f"/tmp/root-link/tmp/{name}-2", chunks_of(b"in"), max_bytes=10
    )
    assert not Path(f"/tmp/{name}-2").exists()
