"""Commands in real jail sandboxes: identity, isolation, limits, timeouts, streams, PTYs."""

from __future__ import annotations

import asyncio
import time

from hangar.agent.runtimes.base import ProcessEvent
from hangar.agent.runtimes.jail import JailRuntime
from hangar.agent.supervisor.client import SupervisorProcess

from .conftest import MakeSandbox


async def test_python_user_env_and_hostname(runtime: JailRuntime, sandbox: str) -> None:
    res = await runtime.exec(sandbox, ["python3", "-c", "print(6 * 7)"])
    assert (res.exit_code, res.stdout, res.timed_out) == (0, b"42\n", False)
    assert (await runtime.exec(sandbox, ["id", "-u"])).stdout == b"1000\n"
    assert (await runtime.exec(sandbox, ["id", "-un"])).stdout == b"user\n"
    assert (await runtime.exec(sandbox, ["hostname"])).stdout == b"box-1\n"
    env = await runtime.exec(sandbox, ["sh", "-c", "echo $HOME $USER $TERM $LANG $GREETING"])
    assert env.stdout == b"/home/user user xterm-256color C.UTF-8 hi\n"
    assert (await runtime.exec(sandbox, ["pwd"])).stdout == b"/home/user\n"
    extra = await runtime.exec(sandbox, ["sh", "-c", "echo $X; pwd"], env={"X": "y"}, cwd="/tmp")
    assert extra.stdout == b"y\n/tmp\n"
    failed = await runtime.exec(sandbox, ["sh", "-c", "echo oops >&2; exit 3"])
    assert (failed.exit_code, failed.stderr) == (3, b"oops\n")
    missing = await runtime.exec(sandbox, ["no-such-command"])
    assert missing.exit_code == 127
    assert b"no-such-command" in missing.stderr


async def test_loopback_only_network(runtime: JailRuntime, sandbox: str) -> None:
    dev = (await runtime.exec(sandbox, ["cat", "/proc/net/dev"])).stdout.decode()
    interfaces = [line.split(":")[0].strip() for line in dev.splitlines()[2:]]
    assert interfaces == ["lo"]
    links = (await runtime.exec(sandbox, ["ip", "-o", "link"])).stdout.decode()
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


async def test_cannot_see_host_processes(runtime: JailRuntime, sandbox: str) -> None:
    res = await runtime.exec(sandbox, ["ps", "-e", "-o", "pid=,user=,args="])
    lines = res.stdout.decode().splitlines()
    assert len(lines) <= 4, lines  # supervisor, its handler, ps
    pid1 = lines[0].split()
    assert pid1[:2] == ["1", "root"]
    assert "supervisor.pyz" in lines[0]
    caps = (await runtime.exec(sandbox, ["grep", "CapEff", "/proc/self/status"])).stdout
    assert caps.split()[1] == b"0000000000000000"


async def test_cpu_quota_written(runtime: JailRuntime, make_sandbox: MakeSandbox) -> None:
    sid = await make_sandbox(vcpus=2)
    if runtime.cgroups.version == 1:
        paths = runtime.cgroup_paths(sid)
        cpu = next(p for p in paths if "cpu" in p.parent.parent.name.split(","))
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "200000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    else:
        assert (runtime.cgroup_paths(sid)[0] / "cpu.max").read_text().split() == [
            "200000",
            "100000",
        ]
    await runtime.destroy(sid)


async def test_memory_and_pids_limits(runtime: JailRuntime, make_sandbox: MakeSandbox) -> None:
    sid = await make_sandbox(memory_mb=64, pids_max=32)
    hog = "b = bytearray(200 * 1024 * 1024); print('survived')"
    res = await runtime.exec(sid, ["python3", "-c", hog])
    assert res.exit_code == 137
    assert b"survived" not in res.stdout
    forks = (
        "import os, time\n"
        "n = 0\n"
        "while n < 100:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(3); os._exit(0)\n"
        "    n += 1\n"
        "print(n, flush=True)\n"
        "os.killpg(0, 9)\n"
    )
    res = await runtime.exec(sid, ["python3", "-c", forks], timeout=20)
    assert 0 < int(res.stdout) < 32
    usage = await runtime.usage(sid)
    assert usage.cpu_ns > 0
    assert 0 < usage.mem_bytes <= 64 * 1024 * 1024
    assert (await runtime.exec(sid, ["true"])).exit_code == 0  # the supervisor survived both
    await runtime.destroy(sid)


async def test_timeout_kills_the_process_group(runtime: JailRuntime, sandbox: str) -> None:
    began = time.monotonic()
    res = await runtime.exec(
        sandbox, ["bash", "-c", "sleep 77 & sleep 77 & echo started; wait"], timeout=1
    )
    assert res.timed_out
    assert res.stdout == b"started\n"
    assert time.monotonic() - began < 5
    ps = await runtime.exec(sandbox, ["ps", "-e", "-o", "args="])
    assert b"sleep 77" not in ps.stdout


async def test_output_cap_and_raw_bytes(runtime: JailRuntime, sandbox: str) -> None:
    script = "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('e' * 10)"
    res = await runtime.exec(sandbox, ["python3", "-c", script], output_limit=1000)
    assert res.stdout == b"x" * 1000
    assert res.stdout_truncated
    assert res.stderr == b"e" * 10
    assert not res.stderr_truncated
    raw = "import sys; sys.stdout.buffer.write(bytes(range(256)))"
    assert (await runtime.exec(sandbox, ["python3", "-c", raw])).stdout == bytes(range(256))


async def next_event(events: object) -> ProcessEvent:
    """The next event of an events() iterator, failing after a few seconds."""
    return await asyncio.wait_for(anext(events), 10)  # type: ignore[call-overload]


async def test_streamed_process_with_stdin(runtime: JailRuntime, sandbox: str) -> None:
    script = (
        "import sys\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    print(line.strip()[::-1], flush=True)\n"
        "sys.stderr.write('bye'); sys.exit(4)\n"
    )
    proc = await runtime.spawn(sandbox, ["python3", "-c", script])
    assert isinstance(proc, SupervisorProcess)
    assert proc.pid > 1
    events = proc.events()
    assert await next_event(events) == ProcessEvent("stdout", b"ready\n")
    await proc.write_stdin(b"hello\n")
    assert await next_event(events) == ProcessEvent("stdout", b"olleh\n")
    await proc.close_stdin()
    assert await next_event(events) == ProcessEvent("stderr", b"bye")
    assert await next_event(events) == ProcessEvent("exit", exit_code=4)

    sleeper = await runtime.spawn(sandbox, ["sleep", "60"])
    await sleeper.kill()
    await sleeper.kill()
    assert [e async for e in sleeper.events()] == [ProcessEvent("exit", exit_code=137)]


async def read_until(pty: object, needle: bytes) -> bytes:
    """Terminal output up to and including `needle`."""
    seen = b""
    while needle not in seen:
        chunk = await asyncio.wait_for(pty.read(), 10)  # type: ignore[attr-defined]
        assert chunk, f"terminal closed before {needle!r}; got {seen!r}"
        seen += chunk
    return seen


async def test_pty_echo_resize_and_exit(runtime: JailRuntime, sandbox: str) -> None:
    pty = await runtime.open_pty(sandbox, ["bash", "--norc", "--noprofile", "-i"], cols=80, rows=24)
    await pty.write(b"echo hi-$((40 + 2))\n")
    out = await read_until(pty, b"hi-42")
    assert b"echo hi-$((40 + 2))" in out  # the terminal echoes what was typed
    await pty.write(b"stty size\n")
    assert b"24 80" in await read_until(pty, b"24 80")
    await pty.resize(100, 40)
    await pty.write(b"stty size; tty\n")
    assert b"40 100" in await read_until(pty, b"/dev/pts/")
    await pty.write(b"exit 5\n")
    while await asyncio.wait_for(pty.read(), 10):
        pass
    assert await asyncio.wait_for(pty.wait(), 10) == 5

    killed = await runtime.open_pty(sandbox, ["sleep", "60"])
    await killed.kill()
    assert await asyncio.wait_for(killed.wait(), 10) == 137
    assert await killed.read() == b""


async def test_timeout_applies_after_output_closes(runtime: JailRuntime, sandbox: str) -> None:
    res = await runtime.exec(sandbox, ["bash", "-c", "exec >&- 2>&-; sleep 60"], timeout=1)
    assert res.timed_out
    assert res.exit_code == 137
    quick = await runtime.exec(sandbox, ["bash", "-c", "exec >&- 2>&-; exit 7"], timeout=5)
    assert (quick.exit_code, quick.timed_out) == (7, False)
