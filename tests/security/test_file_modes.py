"""The data directory is private: 0700, and 0600 for every file in it (SQLite's included)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx

from support.live import (
    LiveServer,
    fresh_postgres_database,
    make_settings,
    run_cli,
    run_in_thread,
)
from support.wrenn import Wrenn


@contextlib.contextmanager
def serving(backend: str, data_dir: Path) -> Iterator[LiveServer]:
    if backend == "postgres":
        with (
            fresh_postgres_database() as url,
            run_in_thread(backend, make_settings(data_dir, url, None)) as live,
        ):
            yield live
    else:
        with run_in_thread(backend, make_settings(data_dir, None, None)) as live:
            yield live


def modes(root: Path) -> dict[str, int]:
    """Every path under `root` (itself as "."), with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    for name, mode in modes(root).items():
        path = root / name
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, f"{name}: {oct(mode)}, not {oct(wanted)}"


def use(live: LiveServer) -> None:
    """Write to the database (signup), so SQLite has its -wal and -shm files open."""
    with httpx.Client(base_url=live.wrenn_url, timeout=30) as client:
        Wrenn(client).signup(name="Modes")


def test_a_fresh_data_dir_is_private(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(backend, data_dir) as live:
        use(live)
        names = set(modes(data_dir))
        assert {"jwt-signing-keys.json", "sealing-keys"} <= names
        if backend == "sqlite":
            assert {"hangar.db", "hangar.db-wal", "hangar.db-shm"} <= names
        assert_private(data_dir)
    assert_private(data_dir)


def test_a_readable_data_dir_is_tightened_at_start(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(backend, data_dir) as live:
        use(live)
    # As an older version left it: world-readable directory, files and journal.
    (data_dir / "hangar.db-journal").write_bytes(b"")
    os.chmod(data_dir, 0o755)  # noqa: S103 - the very mistake under test
    for path in data_dir.iterdir():
        os.chmod(path, 0o644)
    with serving(backend, data_dir) as live:
        use(live)
        assert_private(data_dir)


def test_db_upgrade_makes_a_private_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    result = run_cli("db", "upgrade", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "hangar.db" in modes(data_dir)
    assert_private(data_dir)
