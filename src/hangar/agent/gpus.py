"""The host's GPUs: discovered through NVML when an NVIDIA driver is present.

No driver is not an error: the inventory is empty and says why. A fake inventory
(`HANGAR_AGENT_FAKE_GPUS`, a JSON list of GPUs) exists for tests of the GPU paths on machines
without GPUs, and is refused unless the agent runs the test runtime (`fake`), so a production
agent can never advertise GPUs it does not have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import structlog
from pydantic import TypeAdapter, ValidationError

from hangar.agentproto.models import GpuInfo

log = structlog.get_logger("hangar.agent.gpus")

# Device nodes every GPU sandbox needs besides its own `/dev/nvidiaN`: the driver's control
# node and the unified-memory nodes (CUDA fails without them).
SHARED_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

_GPU_LIST = TypeAdapter(list[GpuInfo])


class FakeGpusRefused(ValueError):
    """A fake GPU inventory was configured outside the test runtime."""


@dataclass(frozen=True)
class Inventory:
    """What the agent reports: its GPUs, or why it has none."""

    gpus: list[GpuInfo] = field(default_factory=list)
    reason: str | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def nvml_inventory() -> Inventory:
    """Every GPU NVML sees, with the device nodes a sandbox given it needs."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        return Inventory(reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        # The usual case on a machine without an NVIDIA driver: report, don't fail.
        return Inventory(reason=f"no NVIDIA driver (NVML: {exc})")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            minor = pynvml.nvmlDeviceGetMinorNumber(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    index=index,
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_mib=int(memory.total) // (1024 * 1024),
                    device_nodes=[f"/dev/nvidia{minor}"],
                )
            )
        return Inventory(gpus, None if gpus else "the NVIDIA driver reports no GPUs")
    except pynvml.NVMLError as exc:
        log.warning("gpus.nvml_failed", error=str(exc))
        return Inventory(reason=f"NVML failed: {exc}")
    finally:
        pynvml.nvmlShutdown()


def fake_inventory(raw: str, runtime: str) -> Inventory:
    """The configured fake GPUs; only the test runtime may have them."""
    if runtime != "fake":
        raise FakeGpusRefused(
            "HANGAR_AGENT_FAKE_GPUS is for tests: it needs HANGAR_AGENT_RUNTIME=fake"
        )
    try:
        return Inventory(_GPU_LIST.validate_python(json.loads(raw)))
    except (ValueError, ValidationError) as exc:
        raise FakeGpusRefused(f"HANGAR_AGENT_FAKE_GPUS is not a list of GPUs: {exc}") from exc


def discover(fake_gpus: str | None, runtime: str) -> Inventory:
    """The host's GPU inventory: the fake one in tests, else NVML's."""
    if fake_gpus is not None:
        return fake_inventory(fake_gpus, runtime)
    return nvml_inventory()
