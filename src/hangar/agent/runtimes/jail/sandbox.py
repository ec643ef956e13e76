"""One jail sandbox on disk: its state directory, its persisted record and its launch."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hangar.agent.runtimes.base import Firewall, PortRule, SandboxSpec
from hangar.agent.runtimes.jail.disk import MAX_MB, MIN_MB
from hangar.agent.runtimes.jail.userns import Slot
from hangar.agent.supervisor import ARCHIVE_NAME
from hangar.agent.supervisor.sandbox.wire import SOCKET_NAME

SANDBOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER, UID, GID, HOME = "user", 1000, 1000, "/home/user"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": HOME,
    "USER": USER,
    "LOGNAME": USER,
    "TERM": "xterm-256color",
    "LANG": "C.UTF-8",
}
IN_SANDBOX = "/run/hangar"  # a tmpfs inside the sandbox: nothing of ours lands in the overlay
# The supervisor needs these to become the sandbox user and to create its home; everything
# it starts runs as that user with no capabilities at all (and bwrap sets no_new_privs).
# They are capabilities of the sandbox's own user namespace only: none reaches the host.
SUPERVISOR_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL")
RUN_TMPFS_BYTES = 1024 * 1024  # config, socket and the read-only files below: a few KiB


@dataclass
class Record:
    """What the runtime persists about a sandbox (state.json) to find it after a restart."""

    sandbox_id: str
    rootfs: str
    vcpus: int
    memory_mb: int
    pids_max: int
    hostname: str
    env: dict[str, str] = field(default_factory=dict)
    init_pid: int | None = None
    init_start: int | None = None  # /proc/<pid>/stat starttime: guards against pid reuse
    cgroup_version: int = 0
    created_at: float = field(default_factory=time.time)
    disk_mb: int | None = None  # the writable layer is an ext4 image of this size
    ipv6: str = ""  # networked: its own netns with this address
    firewall: dict[str, Any] | None = None  # asdict(Firewall) as last applied
    netns: str = ""
    host_veth: str = ""
    uid_slot: int | None = None  # its host id range (see userns); None before allocation
    nested_userns: bool = False  # the template lets its sandboxes make user namespaces
    devices: list[str] = field(default_factory=list)  # host device nodes bound in (GPUs)

    @classmethod
    def from_spec(cls, spec: SandboxSpec, cgroup_version: int) -> Record:
        """A fresh record for a sandbox about to start."""
        return cls(
            sandbox_id=spec.sandbox_id,
            rootfs=str(spec.rootfs),
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            pids_max=spec.pids_max,
            hostname=spec.hostname,
            env=dict(spec.env),
            cgroup_version=cgroup_version,
            disk_mb=spec.disk_mb,
            ipv6=spec.network.ipv6 if spec.network else "",
            firewall=asdict(spec.network.firewall) if spec.network else None,
            nested_userns=spec.nested_userns,
            devices=list(spec.devices),
        )

    def policy(self) -> Firewall | None:
        """The firewall last applied, or None for a sandbox without a network."""
        if self.firewall is None:
            return None
        rules = tuple(
            PortRule(
                protocol=r["protocol"],
                port_start=r["port_start"],
                port_end=r["port_end"],
                source_cidrs=tuple(r["source_cidrs"]),
            )
            for r in self.firewall.get("ingress", ())
        )
        return Firewall(mode=self.firewall["mode"], ingress=rules)

    def save(self, path: Path) -> None:
        """Write atomically so a crash never leaves half a state file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Record:
        """Read a state file."""
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(**raw)


@dataclass(frozen=True)
class Layout:
    """Paths inside a sandbox's state directory on the host."""

    root: Path

    @property
    def state(self) -> Path:
        """The persisted Record."""
        return self.root / "state.json"

    @property
    def image(self) -> Path:
        """The sparse ext4 image of a size-limited writable layer."""
        return self.root / "disk.img"

    @property
    def disk(self) -> Path:
        """Where that image is mounted; upper and work live on it when it exists."""
        return self.root / "disk"

    @property
    def lower(self) -> Path:
        """Mount point of the template's idmapped bind while the overlay is being mounted."""
        return self.root / "lower"

    @property
    def upper(self) -> Path:
        """The overlay's writable layer: everything the sandbox changed."""
        return (self.disk if self.disk.is_dir() else self.root) / "upper"

    @property
    def work(self) -> Path:
        """Overlay scratch space (on the same filesystem as upper, as overlayfs requires)."""
        return (self.disk if self.disk.is_dir() else self.root) / "work"

    @property
    def merged(self) -> Path:
        """The mounted overlay: the sandbox's root filesystem as the host sees it."""
        return self.root / "merged"

    @property
    def run(self) -> Path:
        """A tmpfs owned by the sandbox's root: the supervisor's config and socket."""
        return self.root / "run"

    @property
    def run_ro(self) -> Path:
        """Host-root-owned files in that tmpfs, bound read-only into the sandbox."""
        return self.run / "ro"

    @property
    def socket(self) -> Path:
        """The supervisor's Unix socket."""
        return self.run / SOCKET_NAME

    @property
    def console(self) -> Path:
        """bwrap's and the supervisor's stdout/stderr."""
        return self.root / "console.log"

    def console_tail(self, limit: int = 2000) -> str:
        """The end of the console log, for error messages."""
        try:
            return self.console.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""


def validate(spec: SandboxSpec) -> None:
    """Reject specs this runtime cannot honour safely; ValueError says why."""
    if not SANDBOX_ID.match(spec.sandbox_id):
        raise ValueError(f"invalid sandbox id {spec.sandbox_id!r}")
    if not HOSTNAME.match(spec.hostname):
        raise ValueError(f"invalid hostname {spec.hostname!r}")
    if spec.vcpus < 1 or spec.memory_mb < 32 or spec.pids_max < 16:
        raise ValueError("need vcpus >= 1, memory_mb >= 32 and pids_max >= 16")
    for key, value in spec.env.items():
        if not ENV_NAME.match(key) or "\0" in value:
            raise ValueError(f"invalid environment variable {key!r}")
    if spec.egress:
        raise ValueError("egress networking is not implemented by the jail runtime yet")
    if spec.disk_mb is not None and not MIN_MB <= spec.disk_mb <= MAX_MB:
        raise ValueError(f"disk_mb must be in {MIN_MB}..{MAX_MB}")
    if spec.network is not None:
        address = ipaddress.IPv6Address(spec.network.ipv6)  # ValueError if it is not one
        if address.is_link_local or address.is_multicast or address.is_loopback:
            raise ValueError(f"{address} cannot be a sandbox's routed address")
    if not spec.rootfs.is_dir():
        raise ValueError(f"rootfs {spec.rootfs} is not a directory")
    if not os.path.lexists(spec.rootfs / "usr/bin/python3"):
        raise ValueError(f"rootfs {spec.rootfs} has no /usr/bin/python3 for the supervisor")


def write_config(layout: Layout, env: Mapping[str, str], owner: int) -> None:
    """The supervisor's configuration, readable by the sandbox's root (host uid `owner`) only."""
    config = {
        "uid": UID,
        "gid": GID,
        "user": USER,
        "home": HOME,
        "socket_dir": f"{IN_SANDBOX}/io",
        "env": {**BASE_ENV, **env},
    }
    path = layout.run / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    os.chown(path, owner, owner)


def write_readonly(layout: Layout, files: Mapping[str, str | bytes]) -> None:
    """Files the sandbox may read but never change: owned by host root, outside its range."""
    layout.run_ro.mkdir(mode=0o755)
    for name, content in files.items():
        path = layout.run_ro / name
        data = content.encode() if isinstance(content, str) else content
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def bwrap_argv(
    bwrap: str,
    slot: Slot,
    hostname: str,
    info_fd: int,
    *,
    userns_fd: int,
    seccomp_fd: int,
    own_netns: bool = False,
    devices: Sequence[str] = (),
) -> list[str]:
    """bwrap's command line: run as the slot's root, inside the sandbox's user namespace.

    bwrap never runs as host root: `setpriv` drops to the range's root first (losing every
    host capability), and bwrap enters the namespace that range owns. Its sources are the
    slot's directory, the one path that uid can reach. Loopback only, unless `own_netns`:
    then bwrap already runs inside the sandbox's own network namespace (see `launch`) and
    keeps it instead of making an empty one.
    """
    caps = [arg for cap in SUPERVISOR_CAPS for arg in ("--cap-add", cap)]
    net = [] if own_netns else ["--unshare-net"]
    ro = slot.io / "ro"
    # `--dev` gives a minimal /dev (null, zero, random, tty, ...); a GPU sandbox also gets
    # exactly its GPUs' nodes (absent ones, such as the UVM nodes before the module loads,
    # are skipped).
    nodes = [arg for node in devices for arg in ("--dev-bind-try", node, node)]
    return [
        "setpriv", f"--reuid={slot.base}", f"--regid={slot.base}", "--clear-groups",
        bwrap,
        "--userns", str(userns_fd), "--uid", "0", "--gid", "0",
        "--bind", str(slot.root), "/",
        "--proc", "/proc",
        "--ro-bind", "/proc/sys", "/proc/sys",  # sysctls obey uid 0 alone: keep them out
        "--ro-bind", str(ro / "cpuinfo"), "/proc/cpuinfo",
        "--ro-bind", str(ro / "meminfo"), "/proc/meminfo",
        "--dev", "/dev", *nodes,
        "--perms", "1777", "--tmpfs", "/dev/shm",  # noqa: S108 - inside the sandbox
        "--tmpfs", "/run",
        "--ro-bind", str(ro / ARCHIVE_NAME), f"{IN_SANDBOX}/{ARCHIVE_NAME}",
        "--bind", str(slot.io), f"{IN_SANDBOX}/io",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", *net, "--unshare-cgroup",
        "--hostname", hostname,
        "--as-pid-1",  # the supervisor is init: it reaps orphans, and its death ends all
        "--new-session",
        "--info-fd", str(info_fd),
        "--seccomp", str(seccomp_fd),
        "--cap-drop", "ALL", *caps,
        "--clearenv", "--setenv", "PATH", BASE_ENV["PATH"], "--setenv", "LANG", "C.UTF-8",
        "--chdir", "/",
        "/usr/bin/python3", "-I", "-B", f"{IN_SANDBOX}/{ARCHIVE_NAME}",
        f"{IN_SANDBOX}/io/config.json",
    ]  # fmt: skip


def _join_cgroups(files: Sequence[Path]) -> None:
    """Runs in the forked child before exec: only raw syscalls, no locks taken."""
    pid = str(os.getpid()).encode()
    for path in files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def launch(
    argv_for_fd: Callable[[int], list[str]],
    layout: Layout,
    cgroup_files: Sequence[Path],
    timeout: float = 10.0,
    netns: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> int:
    """Start bwrap detached from us (new session, re-parented to init); returns the init pid.

    `setsid --fork` makes bwrap a grandchild that outlives the agent without ever becoming
    our zombie; it joins the sandbox's cgroups before exec so nothing escapes them. With
    `netns`, nsenter moves it into that network namespace before bwrap starts.
    """
    enter = ["nsenter", f"--net={netns}", "--"] if netns is not None else []
    info_r, info_w = os.pipe()
    try:
        argv = argv_for_fd(info_w)
        with open(layout.console, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                ["setsid", "--fork", *enter, *argv],  # noqa: S607
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(info_w, *pass_fds),
                preexec_fn=lambda: _join_cgroups(cgroup_files),
            )
            proc.wait()
        os.close(info_w)
        info_w = -1
        raw = _read_info(info_r, timeout)
    finally:
        os.close(info_r)
        if info_w >= 0:
            os.close(info_w)
    try:
        return int(json.loads(raw)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise OSError(f"bwrap failed: {layout.console_tail() or 'no output'}") from None


def _read_info(fd: int, timeout: float) -> bytes:
    """Read bwrap's info JSON (complete, or up to EOF) without blocking forever."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("bwrap did not report its child pid in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            data += chunk
            if not chunk or _complete_json(data):
                return data


def _complete_json(data: bytes) -> bool:
    """Whether `data` already holds the whole JSON document."""
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
