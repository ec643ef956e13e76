"""The template store without the network: names, imports, snapshots, locking, caching."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from hangar.agent import templates
from hangar.agent.templates import (
    TemplateError,
    TemplateNotFound,
    TemplateStore,
    TemplateType,
    add_user,
    system_mirror,
)


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path / "templates", mirror="http://mirror.invalid/debian")


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(
    name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = "", uid: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, link, uid, uid
    return info


def test_names_are_validated(store: TemplateStore) -> None:
    for bad in ("", "Upper", "-dash", "a/b", "..", "x" * 65, "sp ace"):
        with pytest.raises(TemplateError):
            store.snapshot_dest(bad)
    with pytest.raises(TemplateNotFound) as missing:
        store.ensure("nope")
    assert isinstance(missing.value, KeyError)
    assert "nope" in str(missing.value)
    assert store.list() == []


def test_import_keeps_a_rootfs_intact(store: TemplateStore, tmp_path: Path) -> None:
    tarball = make_tar(
        tmp_path / "root.tar.gz",
        (member("tmp", tarfile.DIRTYPE, mode=0o1777), b""),
        (member("/etc/", tarfile.DIRTYPE, mode=0o755), b""),
        (member("etc/motd", uid=1000), b"hello"),
        (member("etc/motd-hard", tarfile.LNKTYPE, link="etc/motd", uid=1000), b""),
        (member("etc/localtime", tarfile.SYMTYPE, link="/usr/share/zoneinfo/UTC"), b""),
    )
    info = store.import_tarball("imported", tarball)
    assert (info.name, info.type) == ("imported", TemplateType.BASE)
    root = info.rootfs
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777  # sticky bit kept
    assert (root / "etc/motd").read_text() == "hello"
    if os.geteuid() == 0:
        assert (root / "etc/motd").stat().st_uid == 1000  # numeric owners kept
    assert (root / "etc/motd").stat().st_ino == (root / "etc/motd-hard").stat().st_ino
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert [t.name for t in store.list()] == ["imported"]
    assert store.size_bytes("imported") > 0


@pytest.mark.parametrize(
    "members",
    [
        [(member("../evil"), b"x")],
        [(member("ok/../../evil"), b"x")],
        [(member("dev/sda", tarfile.BLKTYPE), b"")],
        [(member("dev/mem", tarfile.CHRTYPE), b"")],
        [(member("hard", tarfile.LNKTYPE, link="../../../etc/passwd"), b"")],
        [(member("link", tarfile.SYMTYPE, link="OUTSIDE"), b""), (member("link/evil"), b"x")],
    ],
    ids=["dotdot", "nested-dotdot", "block-device", "char-device", "hardlink-out", "via-symlink"],
)
def test_import_refuses_escapes(
    store: TemplateStore, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    fixed = []
    for info, data in members:
        if info.linkname == "OUTSIDE":
            info.linkname = str(outside)
        fixed.append((info, data))
    tarball = make_tar(tmp_path / "evil.tar", *fixed)
    with pytest.raises(TemplateError):
        store.import_tarball("evil", tarball)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert store.list() == []
    assert [p.name for p in store.root.iterdir()] == [".locks"]  # no staging left behind


def test_snapshot_lifecycle(store: TemplateStore) -> None:
    dest = store.snapshot_dest("snap-1")
    assert not dest.exists()
    assert dest.parent.is_dir()
    with pytest.raises(TemplateError):
        store.register_snapshot("snap-1")  # nothing written yet
    (dest / "etc").mkdir(parents=True)
    (dest / "etc" / "hostname").write_text("x" * 10000)
    info = store.register_snapshot("snap-1", source="sb-123")
    assert info.type is TemplateType.SNAPSHOT
    assert info.created_at <= time.time()
    assert store.ensure("snap-1") == dest
    assert store.size_bytes("snap-1") >= 10000
    with pytest.raises(TemplateError):
        store.snapshot_dest("snap-1")  # taken
    store.delete("snap-1")
    store.delete("snap-1")  # idempotent
    assert store.list() == []


def fake_debootstrap(calls: list[str]) -> object:
    def build(self: TemplateStore, name: str, staging: Path) -> None:
        calls.append(name)
        time.sleep(0.2)  # long enough for a second caller to queue on the lock
        rootfs = staging / "rootfs"
        (rootfs / "etc/skel").mkdir(parents=True)
        (rootfs / "etc/skel/.bashrc").write_text("# rc\n")
        for file in ("passwd", "group", "shadow", "gshadow"):
            (rootfs / "etc" / file).write_text("root:x:0:0:root:/root:/bin/bash\n")
        (rootfs / "bin").mkdir()
        (rootfs / "bin/tool").write_text("binary")
        add_user(rootfs)

    return build


def test_concurrent_first_use_builds_once(
    store: TemplateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(TemplateStore, "_debootstrap", fake_debootstrap(calls))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.ensure("minimal"))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["minimal"]
    assert len(set(results)) == 1
    rootfs = results[0]
    assert "user:x:1000:1000:" in (rootfs / "etc/passwd").read_text()
    assert (rootfs / "home/user/.bashrc").stat().st_uid == 1000
    assert store.info("minimal").type is TemplateType.BASE
    store.build("minimal", force=True)
    assert calls == ["minimal", "minimal"]


def test_base_templates_seed_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(TemplateStore, "_debootstrap", fake_debootstrap(calls))
    monkeypatch.setenv("HANGAR_TEMPLATE_CACHE", str(tmp_path / "cache"))
    one = TemplateStore(tmp_path / "one", mirror="http://m.invalid/debian")
    two = TemplateStore(tmp_path / "two", mirror="http://m.invalid/debian")
    a, b = one.ensure("minimal"), two.ensure("minimal")
    assert calls == ["minimal"]  # built once, in the cache
    cached = tmp_path / "cache/minimal/rootfs/bin/tool"
    assert (a / "bin/tool").stat().st_ino == cached.stat().st_ino  # hard-linked, not copied
    assert (b / "bin/tool").read_text() == "binary"
    assert templates.default_cache_dir() == tmp_path / "cache"


def test_system_mirror_reads_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert system_mirror("bookworm", tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
    )
    assert system_mirror("bookworm", tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert system_mirror("bookworm", tmp_path) == "http://old.example/debian"
