"""The default seccomp filter of every jail, in the spirit of the container runtimes' profiles.

Allow by default, refuse what a sandbox never needs and what widens the kernel's attack
surface or reaches state shared with other tenants: keyrings (not namespaced by uid alone),
kernel modules, mounts and the new mount API, reboot, kexec, swap, clocks, BPF, perf events,
io_uring, userfaultfd, file handles (which can open files outside a mount), quotas, the
kernel log, raw I/O ports, and nested user namespaces (`unshare`/`clone` with CLONE_NEWUSER;
`clone3` answers ENOSYS so libcs fall back to `clone`, whose flags a filter can read).
Syscalls of other ABIs (i386, x32) kill the process: libseccomp's default for foreign
architectures.

The filter is compiled with libseccomp (pyseccomp) into classic BPF that bubblewrap loads
just before it runs the supervisor, so every process of the sandbox inherits it.
"""

from __future__ import annotations

import errno
import os
from functools import cache

import pyseccomp as sc  # type: ignore[import-untyped]

CLONE_NEWUSER = 0x10000000

DENIED = (
    "add_key", "keyctl", "request_key",
    "init_module", "finit_module", "delete_module", "create_module",
    "kexec_load", "kexec_file_load", "reboot",
    "mount", "umount2", "pivot_root", "mount_setattr",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "setns",
    "swapon", "swapoff", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at",
    "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "lookup_dcookie",
    "nfsservctl", "uselib", "vhangup", "get_kernel_syms", "query_module", "_sysctl",
    "fanotify_init",
)  # fmt: skip


def _known(name: str) -> bool:
    try:
        sc.resolve_syscall(sc.system_arch(), name)
    except (ValueError, OSError):
        return False
    return True


@cache
def program(*, nested_userns: bool = False) -> bytes:
    """The compiled filter; `nested_userns` lets a template's sandboxes make user namespaces."""
    flt = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        if _known(name):  # a syscall this architecture lacks needs no rule
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
    if not nested_userns:
        flag = sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
        flt.add_rule(sc.ERRNO(errno.EPERM), "unshare", flag)
        flt.add_rule(sc.ERRNO(errno.EPERM), "clone", flag)
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("hangar-seccomp-build", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            flt.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def to_fd(data: bytes) -> int:
    """A readable fd holding `data` from its start, for bubblewrap's `--seccomp FD`."""
    fd = os.memfd_create("hangar-seccomp", 0)  # no os.MFD_CLOEXEC: bwrap inherits it
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
