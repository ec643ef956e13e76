"""Template store: root filesystems that sandboxes start from (built, imported or snapshots).

Layout under `root`: `<name>/rootfs/` (the tree) and `<name>/meta.json` (type and creation
time); a template exists once its meta.json does. Builds and imports happen in a
`.build-*` directory renamed into place, under a per-name file lock, so concurrent first
uses build once and readers never see half a tree. Methods block (debootstrap takes about a
minute): call them through `asyncio.to_thread` from async code.

Base templates can be seeded from a shared cache (`cache_dir`, default `$HANGAR_TEMPLATE_CACHE`
when set): the base is built there once and hard-linked (`cp -al`) into `root`. That is
safe because sandboxes only ever use a rootfs as a read-only overlay lower layer.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import fcntl
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hangar.agent.runtimes.jail.fs import allocated_bytes

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = {"minimal": ("python3", "procps", "ca-certificates", "bash", "iproute2")}
USER, UID, GID, HOME = "user", 1000, 1000, "home/user"


class TemplateError(Exception):
    """A template could not be built, imported or stored."""


class TemplateNotFound(KeyError):
    """No template by that name (and none that could be built)."""

    def __str__(self) -> str:
        return f"template not found: {self.args[0] if self.args else ''}"


class TemplateType(enum.StrEnum):
    """Where a template came from."""

    BASE = "base"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class TemplateInfo:
    """One stored template."""

    name: str
    type: TemplateType
    created_at: float
    rootfs: Path
    nested_userns: bool = False  # its sandboxes may make user namespaces (an operator's opt-in)


def default_cache_dir() -> Path:
    """$HANGAR_TEMPLATE_CACHE, or ~/.cache/hangar/templates."""
    env = os.environ.get("HANGAR_TEMPLATE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache/hangar/templates"


def system_mirror(suite: str = "bookworm", etc: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror apt is configured with for `suite`, else deb.debian.org."""
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text()
            pairs: list[tuple[list[str], list[str]]] = []
            if path.suffix == ".sources":
                for block in text.split("\n\n"):
                    fields = {
                        k.strip().lower(): v.split()
                        for k, _, v in (ln.partition(":") for ln in block.splitlines())
                        if not k.startswith("#") and v
                    }
                    pairs.append((fields.get("uris", []), fields.get("suites", [])))
            else:
                for line in text.splitlines():
                    words = re.sub(r"\[[^]]*\]", "", line).split()
                    if len(words) >= 3 and words[0] == "deb":
                        pairs.append(([words[1]], [words[2]]))
            for uris, suites in pairs:
                for uri in uris:
                    if suite in suites and uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
    return DEFAULT_MIRROR


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateError(f"invalid template name {name!r}")
    return name


class TemplateStore:
    """Root filesystems by name under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        mirror: str | None = None,
        suite: str = "bookworm",
        cache_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.mirror = mirror or system_mirror(suite)
        self.suite = suite
        env_cache = os.environ.get("HANGAR_TEMPLATE_CACHE")
        self.cache_dir = cache_dir or (Path(env_cache).expanduser() if env_cache else None)
        if root.is_dir():
            self._private_root()  # tighten a store made before templates were private

    def _private_root(self) -> None:
        """The store's root, 0700: templates keep in-sandbox owners (uid 1000 is a host account
        too), so no host account may reach into them; sandboxes see them idmapped."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o777 != 0o700:
            self.root.chmod(0o700)

    # ------------------------------------------------------------ lookups

    def _dir(self, name: str) -> Path:
        return self.root / _check_name(name)

    def info(self, name: str) -> TemplateInfo:
        """One template's metadata."""
        try:
            meta = json.loads((self._dir(name) / "meta.json").read_text())
        except FileNotFoundError:
            raise TemplateNotFound(name) from None
        return TemplateInfo(
            name,
            TemplateType(meta["type"]),
            float(meta["created_at"]),
            self._dir(name) / "rootfs",
            nested_userns=bool(meta.get("nested_userns", False)),
        )

    def list(self) -> list[TemplateInfo]:
        """Every complete template, by name."""
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if NAME.match(p.name))
        return [self.info(n) for n in names if (self.root / n / "meta.json").exists()]

    def ensure(self, name: str) -> Path:
        """The template's rootfs, building a known base template on first use."""
        with contextlib.suppress(TemplateNotFound):
            return self.info(name).rootfs
        if name not in BASE_PACKAGES:
            raise TemplateNotFound(name)
        return self.build(name)

    def building(self) -> builtins.list[tuple[str, float, str]]:
        """Builds under way here, by any process: (name, started at, step), oldest first.

        A build is its `.build-NAME-*` directory while NAME's lock is held; one left by a
        killed build holds no lock and is not counted.
        """
        if not self.root.is_dir():
            return []
        found: dict[str, tuple[str, float, str]] = {}
        for staging in self.root.glob(".build-*"):
            name = staging.name.removeprefix(".build-").rsplit("-", 1)[0]
            if not NAME.match(name) or name in found or not self._held(name):
                continue
            with contextlib.suppress(OSError):
                step = "copy" if self._copies_from_cache() else "debootstrap"
                found[name] = (name, staging.stat().st_mtime, step)
        return sorted(found.values(), key=lambda b: b[1])

    def _copies_from_cache(self) -> bool:
        cache = self.cache_dir
        return cache is not None and cache.resolve() != self.root.resolve()

    def _held(self, name: str) -> bool:
        """Whether someone holds NAME's build lock now (flock conflicts across open files)."""
        try:
            with open(self.root / ".locks" / f"{name}.lock", "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(f, fcntl.LOCK_UN)
                return False
        except OSError:
            return False

    def size_bytes(self, name: str) -> int:
        """Bytes allocated on disk by the template's rootfs."""
        return allocated_bytes(self.info(name).rootfs)

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """An exclusive per-name lock across threads and processes."""
        self._private_root()
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _install(self, name: str, staging: Path, kind: TemplateType, **meta: object) -> Path:
        """Write meta.json into `staging` and rename it into place (replacing any old one)."""
        record = {"name": name, "type": kind.value, "created_at": time.time(), **meta}
        (staging / "meta.json").write_text(json.dumps(record, indent=2))
        target = self._dir(name)
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.rename(target, trash)
        os.rename(staging, target)
        shutil.rmtree(trash, ignore_errors=True)
        return target / "rootfs"

    @contextlib.contextmanager
    def _staging(self, name: str) -> Iterator[Path]:
        """A scratch directory that disappears unless it was renamed into place."""
        staging = self.root / f".build-{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def build(self, name: str = "minimal", force: bool = False) -> Path:
        """Build a base template with debootstrap (or from the shared cache); returns rootfs."""
        if name not in BASE_PACKAGES:
            raise TemplateNotFound(name)
        with self._locked(name):
            if not force and (self._dir(name) / "meta.json").exists():
                return self._dir(name) / "rootfs"  # someone built it while we waited
            with self._staging(name) as staging:
                cache = self.cache_dir
                if cache is not None and cache.resolve() != self.root.resolve():
                    source = TemplateStore(cache, mirror=self.mirror, suite=self.suite)
                    _copy(source.build(name, force=force), staging / "rootfs", hardlink=True)
                else:
                    self._debootstrap(name, staging)
                return self._install(
                    name,
                    staging,
                    TemplateType.BASE,
                    suite=self.suite,
                    mirror=self.mirror,
                    packages=BASE_PACKAGES[name],
                )

    def _debootstrap(self, name: str, staging: Path) -> None:
        """debootstrap --variant=minbase, then add the sandbox user and drop apt caches."""
        tool = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        rootfs = staging / "rootfs"
        argv = [
            tool,
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES[name])}",
            self.suite,
            str(rootfs),
            self.mirror,
        ]
        log = staging / "build.log"
        with open(log, "wb") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
        if proc.returncode != 0:
            tail = log.read_bytes()[-3000:].decode(errors="replace")
            raise TemplateError(f"debootstrap failed ({proc.returncode}): {tail}")
        add_user(rootfs)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file() and path.name != "lock":
                    path.unlink()

    def import_tarball(
        self, name: str, tarball_path: Path, *, nested_userns: bool = False
    ) -> TemplateInfo:
        """Import a rootfs tarball (any compression) with unsafe members refused."""
        with self._locked(_check_name(name)), self._staging(name) as staging:
            rootfs = staging / "rootfs"
            rootfs.mkdir()
            try:
                with tarfile.open(tarball_path, "r:*") as tar:
                    tar.extractall(rootfs, numeric_owner=True, filter=_safe_member)  # noqa: S202 - filtered
            except (tarfile.TarError, OSError) as exc:
                raise TemplateError(f"cannot import {tarball_path}: {exc}") from exc
            self._install(
                name,
                staging,
                TemplateType.BASE,
                source=str(tarball_path),
                nested_userns=nested_userns,
            )
        return self.info(name)

    def snapshot_dest(self, name: str) -> Path:
        """Where Runtime.snapshot should write the rootfs of a new snapshot template."""
        target = self._dir(name)
        if (target / "meta.json").exists():
            raise TemplateError(f"template {name} already exists")
        shutil.rmtree(target, ignore_errors=True)  # leftovers of a failed snapshot
        self._private_root()
        target.mkdir()
        return target / "rootfs"

    def register_snapshot(self, name: str, *, source: str | None = None) -> TemplateInfo:
        """Record a snapshot written to snapshot_dest(name) as a template."""
        target = self._dir(name)
        if not (target / "rootfs").is_dir():
            raise TemplateError(f"no snapshot written for {name}")
        meta = {"name": name, "type": "snapshot", "created_at": time.time(), "source": source}
        (target / "meta.json").write_text(json.dumps(meta, indent=2))
        return self.info(name)

    def delete(self, name: str) -> None:
        """Remove a template; idempotent (sandboxes using it as their lower layer must be gone)."""
        target = self._dir(name)
        with self._locked(name):
            if not target.exists():
                return
            trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, trash)
            shutil.rmtree(trash)


def add_user(rootfs: Path) -> None:
    """Add `user` (uid/gid 1000, home /home/user) to a freshly built, trusted rootfs."""
    etc = rootfs / "etc"
    passwd = (etc / "passwd").read_text().splitlines()
    if any(line.split(":")[2:3] == [str(UID)] for line in passwd):
        return
    days = int(time.time() // 86400)
    lines = {
        "passwd": f"{USER}:x:{UID}:{GID}:Hangar user:/{HOME}:/bin/bash",
        "group": f"{USER}:x:{GID}:",
        "shadow": f"{USER}:*:{days}:0:99999:7:::",
        "gshadow": f"{USER}:!::",
    }
    for file, line in lines.items():
        if (etc / file).exists():
            with open(etc / file, "a") as f:
                f.write(line + "\n")
    home = rootfs / HOME
    shutil.copytree(etc / "skel", home, symlinks=True, dirs_exist_ok=True)
    for path in [home, *home.rglob("*")]:
        os.lchown(path, UID, GID)
    home.chmod(0o755)


def _copy(source: Path, dest: Path, *, hardlink: bool) -> None:
    """cp -a (hard-linking when asked and possible); argv only."""
    for flags in (["-al"] if hardlink else []) + ["-a"]:
        shutil.rmtree(dest, ignore_errors=True)
        argv = ["cp", flags, "--", str(source), str(dest)]
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:  # noqa: S603
            return
    raise TemplateError(f"copying {source} to {dest} failed")


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Refuse device nodes and anything landing (or hard-linking) outside `dest`.

    Owners and modes are kept (it is a root filesystem); symlinks may point anywhere since
    they are only ever resolved inside a sandbox, but nothing is extracted *through* one:
    realpath() sees symlinks already extracted and catches that.
    """
    if member.ischr() or member.isblk():
        raise tarfile.FilterError(f"device node {member.name} refused")
    name = member.name.lstrip("/")
    if ".." in PurePosixPath(name).parts:
        raise tarfile.FilterError(f"path {member.name} escapes the rootfs")
    real_dest = os.path.realpath(dest)
    targets = [name]
    if member.islnk():
        link = member.linkname.lstrip("/")
        if ".." in PurePosixPath(link).parts:
            raise tarfile.FilterError(f"hard link {member.name} escapes the rootfs")
        targets.append(link)
        member = member.replace(linkname=link, deep=False)
    for target in targets:
        real = os.path.realpath(os.path.join(real_dest, target))
        if os.path.commonpath([real, real_dest]) != real_dest:
            raise tarfile.FilterError(f"{member.name} resolves outside the rootfs")
    return member.replace(name=name, deep=False) if name != member.name else member
