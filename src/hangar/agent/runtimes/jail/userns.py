"""User namespaces for jails: a host uid/gid range of its own per sandbox, and idmapped mounts.

Each sandbox runs in a user namespace that maps its ids 0..65535 onto a host range that no
host account and no other live sandbox uses, so two tenants never share a uid (and with it
the kernel's per-uid accounting: inotify instances, keys, process counts, mqueues), and no
host account can signal, trace or read another's processes through `/proc/<pid>/root`.

A range is a *slot*: slot `n` covers host ids `FIRST + n * SIZE` onwards. A slot is taken by
creating its directory under the host-wide slot root with `mkdir` (atomic: exactly one
creator wins, also across several agents on one machine) and freed by removing it once
everything of the sandbox is dead and unmounted. The same directory is where the sandbox's
root and its supervisor files are exposed to bubblewrap, which runs as the range's root and
so cannot reach into the agent's root-only state directory.

Templates stay on disk with in-sandbox owners (0 for root, 1000 for the user) in root-only
directories; each sandbox sees them through an idmapped mount that shifts them into its range.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SIZE = 65536  # ids 0..65535 inside: root, the sandbox user (1000) and nobody (65534)
FIRST = 0x10000000  # 268435456: far above any account range a distribution hands out
SLOTS = 4096  # host ids up to 0x20000000
DEFAULT_SLOT_ROOT = Path("/run/hangar-jails")

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and aarch64 alike
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, 0o2000000
_AT_FDCWD, _AT_EMPTY_PATH, _AT_RECURSIVE = -100, 0x1000, 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
_MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [  # struct mount_attr from <linux/mount.h>
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class UsernsError(OSError):
    """A user namespace, an id range or an idmapped mount could not be set up."""


def _syscall(number: int, *args: object, what: str) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise UsernsError(err, f"{what}: {os.strerror(err)}")
    return result


def host_accounts_in(first: int, last: int) -> list[str]:
    """Host users and groups whose id falls in [first, last]: such a range is never used."""
    clash = [f"user {p.pw_name}" for p in pwd.getpwall() if first <= p.pw_uid <= last]
    clash += [f"group {g.gr_name}" for g in grp.getgrall() if first <= g.gr_gid <= last]
    return clash


@dataclass(frozen=True)
class Slot:
    """One allocated id range and its directory under the slot root."""

    index: int
    dir: Path

    @property
    def base(self) -> int:
        """The host uid (and gid) that is root inside the sandbox."""
        return FIRST + self.index * SIZE

    @property
    def root(self) -> Path:
        """Where the sandbox's root filesystem is bound for bubblewrap."""
        return self.dir / "root"

    @property
    def io(self) -> Path:
        """Where the supervisor's tmpfs (config, socket, read-only files) is bound."""
        return self.dir / "io"


class SlotAllocator:
    """Hands out id ranges host-wide: a slot is its directory, taken by one `mkdir`."""

    def __init__(self, root: Path = DEFAULT_SLOT_ROOT, slots: int = SLOTS) -> None:
        self.root = root
        self.slots = slots
        self._next = 0
        self._checked = False

    def _prepare(self) -> None:
        if self._checked:
            return
        last = FIRST + self.slots * SIZE - 1
        if clash := host_accounts_in(FIRST, last):
            raise UsernsError(
                errno.EEXIST, f"host ids {FIRST}..{last} are in use by {', '.join(clash[:3])}"
            )
        # Traversable but not listable: bubblewrap, running as a sandbox's root, must reach
        # its own slot; nobody may enumerate the others (each slot dir is 0700 its own).
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chown(self.root, 0, 0)
        os.chmod(self.root, 0o711)  # noqa: S103 - traversal only, see above
        self._checked = True

    def slot(self, index: int) -> Slot:
        """The slot of a known index (a sandbox's record keeps it)."""
        return Slot(index, self.root / str(index))

    def allocate(self, owner: str) -> Slot:
        """Take the next free slot; `owner` (the sandbox's state dir) is written into it."""
        self._prepare()
        for step in range(self.slots):
            index = (self._next + step) % self.slots
            slot = self.slot(index)
            try:
                slot.dir.mkdir(mode=0o700)
            except FileExistsError:
                continue
            self._next = index + 1
            (slot.dir / "owner").write_text(owner)
            return slot
        raise UsernsError(errno.EAGAIN, f"all {self.slots} sandbox id ranges are in use")

    def owned_by(self, state_root: Path) -> list[Slot]:
        """Slots taken for sandboxes under `state_root` (one agent's, on a shared host)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                owner = Path((entry / "owner").read_text())
            except OSError:
                continue  # being taken right now, or another agent's half-made slot
            if owner.parent == state_root:
                found.append(self.slot(int(entry.name)))
        return found

    def release(self, slot: Slot) -> None:
        """Free a slot once nothing of its sandbox is left (its mounts are gone)."""
        for name in ("root", "io"):
            path = slot.dir / name
            if path.is_dir():
                path.rmdir()  # EBUSY while still a mount point: the slot stays taken
        (slot.dir / "owner").unlink(missing_ok=True)
        if slot.dir.is_dir():
            slot.dir.rmdir()  # fails (and keeps the slot taken) if anything is left in it


def make_userns(base: int, timeout: float = 5.0) -> tuple[subprocess.Popen[bytes], int]:
    """A user namespace mapping 0..SIZE-1 onto `base`: (the process holding it, an fd to it).

    The holder runs as `base` before it unshares, so the namespace is owned by the range's
    root: bubblewrap, started as that uid, may then enter it (owner rights), while no host
    account owns it. The caller closes the fd and kills the holder once bubblewrap is in.
    """
    holder = subprocess.Popen(
        ["unshare", "--user", "--", "sleep", "infinity"],  # noqa: S607
        user=base,
        group=base,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                if os.readlink(f"/proc/{holder.pid}/ns/user") != ours:
                    break
            except FileNotFoundError:
                pass
            if holder.poll() is not None or time.monotonic() > deadline:
                detail = holder.stderr.read().decode(errors="replace") if holder.stderr else ""
                raise UsernsError(errno.EIO, f"unshare --user failed: {detail.strip()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        mapping = f"0 {base} {SIZE}\n"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{holder.pid}/{name}", "w") as f:
                f.write(mapping)
        fd = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        holder.kill()
        holder.wait()
        raise
    return holder, fd


def end_holder(holder: subprocess.Popen[bytes]) -> None:
    """Stop a namespace holder (the sandbox's own processes keep the namespace alive)."""
    holder.kill()
    holder.wait()
    if holder.stderr is not None:
        holder.stderr.close()


def idmapped_bind(source: Path, target: Path, userns_fd: int) -> None:
    """Bind `source` read-only on `target`, its owners shifted by the namespace's mapping.

    Read-only because it is a template: nothing may ever write through it (an overlay
    only reads its lower layers, and a stray recursive delete must not reach the template).
    """
    tree = _syscall(
        _SYS_OPEN_TREE,
        _AT_FDCWD,
        os.fsencode(source),
        _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE,
        what=f"open_tree {source}",
    )
    try:
        flags = _MOUNT_ATTR_IDMAP | _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
        attr = _MountAttr(flags, 0, 0, userns_fd)
        _syscall(
            _SYS_MOUNT_SETATTR,
            tree,
            b"",
            _AT_EMPTY_PATH | _AT_RECURSIVE,
            ctypes.byref(attr),
            ctypes.sizeof(attr),
            what=f"idmapping {source} (needs Linux >= 5.19 and a filesystem that supports it)",
        )
        _syscall(
            _SYS_MOVE_MOUNT,
            tree,
            b"",
            _AT_FDCWD,
            os.fsencode(target),
            _MOVE_MOUNT_F_EMPTY_PATH,
            what=f"move_mount onto {target}",
        )
    finally:
        os.close(tree)


def shift_owners(root: Path, base: int) -> None:
    """Give a tree copied out of a sandbox its in-sandbox owners (the template form).

    Ids of the sandbox's range become 0..SIZE-1; anything else (ids the sandbox could not
    map, shown as the overflow id) becomes root, so a snapshot never carries a host id.
    """

    def back(value: int) -> int:
        return value - base if base <= value < base + SIZE else 0

    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, back(st.st_uid), back(st.st_gid))
            if not os.path.islink(path) and st.st_mode & 0o6000:
                os.chmod(path, st.st_mode & 0o7777)  # chown clears set-id bits: keep them
    st = os.lstat(root)
    os.lchown(root, back(st.st_uid), back(st.st_gid))
