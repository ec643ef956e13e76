"""Figure 7: snapshot template creation, and capsule creation from that template.

Snapshot: `POST /v1/snapshots` on a running capsule that wrote a file (the capsule is
destroyed, as in Wrenn). Baseline: `cp -a --reflink=auto` of the template's root
filesystem, the copy the runtime itself makes (a snapshot is the whole merged tree).
Create from template: `POST /v1/capsules` with the snapshot's name, then the first exec that
reads the file back. Baseline: the same from the base template `minimal`, interleaved.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

from bench.fig_start import run_raw
from bench.stack import Stack
from bench.stats import Figure, ms, p50

MARKER = "/home/user/bench-marker"


async def _start_and_exec(stack: Stack, template: str, *cmd: str) -> tuple[float, float, str]:
    """Seconds to create, to create + first exec, and its stdout; the capsule is destroyed."""
    started = time.perf_counter()
    capsule = await stack.create(template, raw=True)
    created = time.perf_counter()
    result = await stack.exec(capsule, *cmd, raw=True)
    done = time.perf_counter()
    await stack.destroy(capsule)
    return created - started, done - started, str(result["stdout"])


async def measure(stack: Stack, samples: int) -> list[Figure]:
    """Snapshot a capsule per sample, start one from it, then delete the template."""
    snap, copy, create, first, base_create, base_first = [], [], [], [], [], []
    for i in range(samples):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        capsule = await stack.create()
        await stack.exec(capsule, "/bin/sh", "-c", f"echo {name} > {MARKER}")
        started = time.perf_counter()
        body = {"sandbox_id": capsule, "name": name}
        resp = await stack.raw.post("/wrenn/v1/snapshots", body)
        snap.append(time.perf_counter() - started)
        stack.check(resp, 201, "snapshot")
        stack.capsules.discard(capsule)  # the snapshot destroyed it
        stack.snapshots.add(name)
        size = resp.json().get("size_bytes")

        created, answered, out = await _start_and_exec(stack, name, "/bin/cat", MARKER)
        assert out == f"{name}\n", out
        create.append(created)
        first.append(answered)
        created, answered, _ = await _start_and_exec(stack, "minimal", "/bin/echo", "hello")
        base_create.append(created)
        base_first.append(answered)
        stack.check(await stack.api.delete(f"/v1/snapshots/{name}"), 204)
        stack.snapshots.discard(name)

        dest = stack.root / f"copy-{i}"
        started = time.perf_counter()
        await run_raw(["cp", "-a", "--reflink=auto", "--", str(stack.template_rootfs), str(dest)])
        copy.append(time.perf_counter() - started)
        await asyncio.to_thread(shutil.rmtree, dest)
    return [
        Figure.latency(
            "snapshot_create",
            snap,
            copy,
            baseline="cp -a --reflink=auto of the template rootfs (the copy a snapshot makes)",
            limits=(
                "a full copy of the merged root filesystem with cp -a while the capsule is "
                "frozen (no reflinks on ext4), then a walk to size it; cost grows with the "
                "rootfs, not with what the capsule changed"
            ),
            extra={"template_bytes": size},
        ),
        Figure.latency(
            "create_from_snapshot",
            create,
            base_create,
            baseline="create from the base template `minimal` (same run, interleaved)",
            limits="same path as a base start: the snapshot is just another overlay lower dir",
            extra={
                "first_exec_p50_ms": ms(p50(first)),
                "base_first_exec_p50_ms": ms(p50(base_first)),
            },
        ),
    ]
