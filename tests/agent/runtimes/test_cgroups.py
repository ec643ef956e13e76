"""The cgroup drivers against fake cgroup trees in a temporary directory (no root needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hangar.agent.runtimes.jail.cgroups import CgroupError, CgroupV1, CgroupV2, Limits, detect
from hangar.agent.supervisor import SOURCES

LIMITS = Limits(vcpus=2, memory_mb=512, pids_max=100)


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    """A fake pure-v2 hierarchy root."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    return tmp_path


def seed_parent(root: Path) -> None:
    """The kernel populates new cgroup dirs; in a fake tree the test does it."""
    (root / "hangar").mkdir(exist_ok=True)
    (root / "hangar" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "hangar" / "cgroup.subtree_control").write_text("")


def test_detect_picks_v2_v1_or_fails(v2_root: Path, tmp_path: Path) -> None:
    assert isinstance(detect(v2_root), CgroupV2)
    v1 = tmp_path / "v1"
    for name in ("cpu,cpuacct", "memory", "pids", "freezer"):
        (v1 / name).mkdir(parents=True)
    assert isinstance(detect(v1), CgroupV1)
    with pytest.raises(CgroupError):
        detect(tmp_path / "nothing")


def test_v2_create_writes_limits_and_enables_controllers(v2_root: Path) -> None:
    seed_parent(v2_root)
    cg = CgroupV2(v2_root)
    cg.create("sb1", LIMITS)
    path = v2_root / "hangar" / "sb1"
    assert cg.paths("sb1") == [path]
    assert (path / "cpu.max").read_text() == "200000 100000"
    assert (path / "memory.max").read_text() == str(512 * 1024 * 1024)
    assert (path / "pids.max").read_text() == "100"
    assert not (path / "memory.swap.max").exists()  # only written where the kernel has it
    for parent in (v2_root, v2_root / "hangar"):
        assert (parent / "cgroup.subtree_control").read_text().split() == [
            "+cpu",
            "+memory",
            "+pids",
        ]
    assert cg.join_files("sb1") == [path / "cgroup.procs"]


def test_v2_missing_controller_is_an_error(v2_root: Path) -> None:
    (v2_root / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(CgroupError, match="memory"):
        CgroupV2(v2_root).create("sb1", LIMITS)


def test_v2_freeze_waits_for_the_kernel(v2_root: Path) -> None:
    seed_parent(v2_root)
    cg = CgroupV2(v2_root)
    cg.create("sb1", LIMITS)
    path = v2_root / "hangar" / "sb1"
    (path / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze("sb1")
    assert (path / "cgroup.freeze").read_text() == "1"
    assert cg.frozen("sb1")
    (path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    with pytest.raises(CgroupError, match="did not freeze"):
        cg.freeze("sb1", timeout=0.1)
    assert (path / "cgroup.freeze").read_text() == "0"  # a failed freeze thaws again


def test_v2_usage_pids_and_kill(v2_root: Path) -> None:
    seed_parent(v2_root)
    cg = CgroupV2(v2_root)
    cg.create("sb1", LIMITS)
    path = v2_root / "hangar" / "sb1"
    (path / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (path / "memory.current").write_text("4096\n")
    (path / "cgroup.procs").write_text("")
    (path / "cgroup.kill").write_text("")
    assert cg.cpu_ns("sb1") == 1_500_000
    assert cg.mem_bytes("sb1") == 4096
    assert cg.pids("sb1") == []
    cg.kill_all("sb1")
    assert (path / "cgroup.kill").read_text() == "1"
    assert cg.exists("sb1")
    for child in path.iterdir():  # a real cgroupfs lets rmdir remove its control files
        child.unlink()
    cg.remove("sb1")
    assert not cg.exists("sb1")
    cg.remove("sb1")  # idempotent


def test_v1_one_dir_per_hierarchy(tmp_path: Path) -> None:
    for name in ("cpu,cpuacct", "memory", "pids", "freezer"):
        (tmp_path / name).mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    cg = CgroupV1(tmp_path)
    assert len(cg.paths("sb2")) == 4  # cpu and cpuacct share one hierarchy
    cg.create("sb2", LIMITS)
    cpu = tmp_path / "cpu" / "hangar" / "sb2"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "200000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (tmp_path / "memory/hangar/sb2/memory.limit_in_bytes").read_text() == str(512 << 20)
    assert (tmp_path / "pids/hangar/sb2/pids.max").read_text() == "100"
    (tmp_path / "freezer/hangar/sb2/freezer.state").write_text("FREEZING")
    assert not cg.frozen("sb2")
    cg.set_frozen("sb2", True)
    assert cg.frozen("sb2")
    with pytest.raises(FileExistsError):
        cg.create("sb2", LIMITS)


def test_supervisor_is_python39_syntax() -> None:
    """The supervisor runs under the template's python3, which may be older than ours."""
    modules = sorted(SOURCES.glob("*.py"))
    assert {m.name for m in modules} >= {"wire.py", "processes.py", "files.py", "init.py"}
    for module in modules:
        ast.parse(module.read_text(), feature_version=(3, 9))
