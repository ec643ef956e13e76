"""Figure 1: create a capsule and get its first exec result, through the Wrenn API.

Baseline: a raw `bwrap` run of the same command with the same namespaces over the same
template root filesystem (read-only bind, no overlay, no cgroups, no supervisor, no API).
A second, informative baseline runs the supervisor's interpreter (`python3 -I -c pass`) the
same way: its start-up is a floor under Hangar's start.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.stack import Stack
from bench.stats import Figure, ms, p50

COMMAND = ("/bin/echo", "hello")
NAMESPACES = (
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--unshare-cgroup",
)


def bwrap_argv(rootfs: Path, *command: str) -> list[str]:
    """The raw bubblewrap baseline: same namespaces, template rootfs bound read-only."""
    return [
        "bwrap",
        "--ro-bind", str(rootfs), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        *NAMESPACES,
        "--die-with-parent",
        *command,
    ]  # fmt: skip


async def run_raw(argv: list[str]) -> bytes:
    """Run a command to completion and return its stdout (fails on a non-zero exit)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.decode()[-500:]}")
    return out


async def measure(stack: Stack, samples: int) -> list[Figure]:
    """Interleave capsule starts and raw bwrap runs; destroy each capsule after it answers."""
    rootfs = stack.template_rootfs
    for _ in range(2):  # warm-up: template in place, caches hot, code paths imported
        capsule = await stack.create(raw=True)
        await stack.exec(capsule, *COMMAND, raw=True)
        await stack.destroy(capsule)
        await run_raw(bwrap_argv(rootfs, *COMMAND))
    total, create, first_exec, raw, raw_py = [], [], [], [], []
    for _ in range(samples):
        started = time.perf_counter()
        capsule = await stack.create(raw=True)
        created = time.perf_counter()
        result = await stack.exec(capsule, *COMMAND, raw=True)
        done = time.perf_counter()
        assert result["stdout"] == "hello\n", result
        total.append(done - started)
        create.append(created - started)
        first_exec.append(done - created)
        await stack.destroy(capsule)

        started = time.perf_counter()
        out = await run_raw(bwrap_argv(rootfs, *COMMAND))
        raw.append(time.perf_counter() - started)
        assert out == b"hello\n", out
        started = time.perf_counter()
        await run_raw(bwrap_argv(rootfs, "/usr/bin/python3", "-I", "-B", "-c", "pass"))
        raw_py.append(time.perf_counter() - started)
    return [
        Figure.latency(
            "start_to_first_exec",
            total,
            raw,
            baseline="raw bwrap run of /bin/echo, same namespaces, rootfs ro-bound",
            target="p50 <= 20 ms",
            limits=(
                "create = overlay mount + 5 cgroup v1 dirs + setsid/bwrap + a python3 "
                "supervisor that must start and answer a ping (the agent polls every 20 ms), "
                "then the API commits the row; first exec = one more API round trip"
            ),
            extra={
                "create_p50_ms": ms(p50(create)),
                "first_exec_p50_ms": ms(p50(first_exec)),
                "bwrap_python_start_p50_ms": ms(p50(raw_py)),
                "command": " ".join(COMMAND),
            },
        )
    ]
