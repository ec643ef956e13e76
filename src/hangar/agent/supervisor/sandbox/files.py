"""Files in the sandbox: read, write (atomically), list, make directories, remove.

Stdlib only, Python >= 3.9: this module runs inside sandboxes.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import shutil
import stat
from typing import Any

from . import codes
from .wire import ABORT, CHUNK, DATA, END, RESULT, STARTED, Conn, OpError


def os_error(exc: OSError, path: str) -> OpError:
    """Map an OSError to the protocol's error codes."""
    by_errno = {
        errno.ENOENT: codes.NOT_FOUND,
        errno.ENOTDIR: codes.NOT_DIR,
        errno.EISDIR: codes.IS_DIR,
        errno.EACCES: codes.PERMISSION,
        errno.EPERM: codes.PERMISSION,
        errno.EEXIST: codes.EXISTS,
        errno.ENOTEMPTY: codes.NOT_EMPTY,
    }
    return OpError(by_errno.get(exc.errno or 0, codes.ERROR), f"{path}: {exc.strerror or exc}")


def entry(path: str, st: os.stat_result | None = None) -> dict[str, Any]:
    """Describe one path (lstat: symlinks are reported, not followed)."""
    st = st or os.lstat(path)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    target = None
    if stat.S_ISLNK(st.st_mode):
        kind, target = "symlink", os.readlink(path)
    return {
        "name": os.path.basename(path) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": st.st_mode & 0o7777,
        "permissions": stat.filemode(st.st_mode),
        "owner": name_of(pwd.getpwuid, st.st_uid),
        "group": name_of(grp.getgrgid, st.st_gid),
        "modified_at": int(st.st_mtime),
        "symlink_target": target,
    }


def name_of(lookup: Any, ident: int) -> str:
    """A user's or group's name, or the number when the sandbox does not know it."""
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def op_read(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Stream a regular file in chunks."""
    path = req["path"]
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            code = codes.IS_DIR if stat.S_ISDIR(st.st_mode) else codes.NOT_FILE
            raise OpError(code, f"{path}: not a regular file")
        conn.send_json(STARTED, {"size": st.st_size})
        while True:
            data = f.read(CHUNK)
            if not data:
                break
            conn.send(DATA, data)
    conn.send_json(RESULT, {})


def op_write(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Receive a file into a temp sibling and rename it in only when complete."""
    path, max_bytes = req["path"], int(req["max_bytes"])
    parent, base = os.path.split(os.path.normpath(path))
    if not base:
        raise OpError(codes.IS_DIR, f"{path}: is a directory")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, parent) from None
    if os.path.isdir(path):
        raise OpError(codes.IS_DIR, f"{path}: is a directory")
    tmp = os.path.join(parent, f".{base}.hangar-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    total, done = 0, False
    try:
        conn.send_json(STARTED, {})
        while True:
            frame = conn.frame()
            if frame is None or frame[0] == ABORT:
                raise OpError(codes.ABORTED, "upload aborted")
            kind, payload = frame
            if kind == END:
                break
            total += len(payload)
            if total > max_bytes:
                raise OpError(codes.TOO_LARGE, f"{path}: larger than {max_bytes} bytes")
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        os.rename(tmp, path)
        done = True
    finally:
        os.close(fd)
        if not done:
            os.unlink(tmp)
    conn.send_json(RESULT, {"bytes": total})


def op_list(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Entries under a directory, recursing `depth` levels without following symlinks."""
    path = os.path.normpath(req["path"])
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise OpError(codes.NOT_DIR, f"{path}: not a directory")
    out: list[dict[str, Any]] = []

    def walk(directory: str, level: int) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            out.append(entry(item.path, item.stat(follow_symlinks=False)))
            if level > 1 and item.is_dir(follow_symlinks=False):
                with contextlib.suppress(PermissionError):  # listed, but not entered
                    walk(item.path, level - 1)

    walk(path, max(1, int(req.get("depth", 1))))
    conn.send_json(RESULT, {"entries": out})


def op_mkdir(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """mkdir -p, reporting the directory's entry."""
    path = os.path.normpath(req["path"])
    os.makedirs(path, exist_ok=True)
    conn.send_json(RESULT, {"entry": entry(path)})


def op_remove(conn: Conn, req: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Remove a file, symlink or whole directory tree."""
    path = os.path.normpath(req["path"])
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    conn.send_json(RESULT, {})
