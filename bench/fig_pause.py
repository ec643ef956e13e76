"""Figure 4: pause and resume latency through the Wrenn API.

Baseline: the kernel mechanism itself, a cgroup freezer (v1 `freezer.state`, v2
`cgroup.freeze`) around one idle process, frozen and polled until frozen, then thawed. The
agent's own pause/resume (its Unix socket) is measured too, to split costs.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench.procfs import CGROUP_ROOT
from bench.stack import Stack
from bench.stats import Figure, ms, p50, timed


class RawFreezer:
    """A throwaway freezer cgroup holding one `sleep`."""

    def __init__(self) -> None:
        v1 = CGROUP_ROOT / "freezer"
        self.v1 = v1.is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists()
        name = f"hangar-bench-{os.getpid()}"
        self.path = (v1 if self.v1 else CGROUP_ROOT) / name
        self.path.mkdir()
        self.proc = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        (self.path / "cgroup.procs").write_text(str(self.proc.pid))

    def _state(self) -> str:
        if self.v1:
            return (self.path / "freezer.state").read_text().strip()
        events = (self.path / "cgroup.events").read_text()
        return "FROZEN" if "frozen 1" in events.splitlines() else "THAWED"

    def freeze(self) -> None:
        if self.v1:
            _write(self.path / "freezer.state", "FROZEN")
        else:
            _write(self.path / "cgroup.freeze", "1")
        deadline = time.monotonic() + 10
        while self._state() != "FROZEN":
            if time.monotonic() > deadline:
                raise RuntimeError("raw freezer did not freeze")
            time.sleep(0.0002)

    def thaw(self) -> None:
        if self.v1:
            _write(self.path / "freezer.state", "THAWED")
        else:
            _write(self.path / "cgroup.freeze", "0")

    def close(self) -> None:
        self.thaw()
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


async def measure(stack: Stack, samples: int) -> list[Figure]:
    """Cycle pause/resume on one idle capsule, its agent and a raw freezer in turn."""
    capsule = await stack.create()
    raw = RawFreezer()
    try:
        sandbox = stack.sandbox_id(capsule)

        async def api(action: str) -> None:
            resp = await stack.raw.post(f"/wrenn/v1/capsules/{capsule}/{action}")
            stack.check(resp, 200, action)

        async def agent(action: str) -> None:
            resp = await stack.raw_agent.post(f"/v1/sandboxes/{sandbox}/{action}")
            stack.check(resp, 200, f"agent {action}")

        async def raw_freeze() -> None:
            raw.freeze()

        async def raw_thaw() -> None:
            raw.thaw()

        names = ("pause", "resume", "agent_pause", "agent_resume", "raw_freeze", "raw_thaw")
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(samples + 5):
            runs = (
                ("pause", lambda: api("pause")),
                ("resume", lambda: api("resume")),
                ("agent_pause", lambda: agent("pause")),
                ("agent_resume", lambda: agent("resume")),
                ("raw_freeze", raw_freeze),
                ("raw_thaw", raw_thaw),
            )
            for name, fn in runs:
                elapsed = await timed(fn)
                if i >= 5:  # warm-up
                    times[name].append(elapsed)
        await stack.exec(capsule, "/bin/true")  # it still works after all that
    finally:
        raw.close()
        await stack.destroy(capsule)
    limits = (
        "pause: the API also reads the capsule's 3 metric tiers from the agent and rewrites "
        "its metric rows in the database before answering; the agent freezes in a thread "
        "and polls the freezer every 10 ms. resume: thaw + row update + commit"
    )
    return [
        Figure.latency(
            "pause",
            times["pause"],
            times["raw_freeze"],
            baseline="raw cgroup freezer: freeze one idle process, poll until frozen",
            target="<= 5 ms",
            limits=limits,
            extra={"agent_api_p50_ms": ms(p50(times["agent_pause"]))},
        ),
        Figure.latency(
            "resume",
            times["resume"],
            times["raw_thaw"],
            baseline="raw cgroup freezer: thaw",
            target="<= 5 ms",
            limits=limits,
            extra={"agent_api_p50_ms": ms(p50(times["agent_resume"]))},
        ),
    ]
