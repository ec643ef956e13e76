"""`hangar admin set-quota` / `show-quota`, run as an operator would, on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from hangar.core.db import Database
from hangar.core.identity.models import Membership, User
from support.live import database_url_of, run_cli
from support.processes import cli_env
from support.wrenn import PASSWORD, unique_email


def _team_of(data_dir: Path, database_url: str | None, email: str) -> str:
    async def find() -> str:
        db = Database(database_url_of(data_dir, database_url))
        try:
            async with db.session() as session:
                team_id = await session.scalar(
                    select(Membership.team_id).join(User).where(User.email == email)
                )
                assert team_id is not None
                return team_id
        finally:
            await db.dispose()

    return asyncio.run(find())


def test_admin_sets_and_shows_team_quotas(tmp_path: Path, fresh_db: str | None) -> None:
    env = cli_env(fresh_db, HANGAR_QUOTAS__VCPU="12")
    email = unique_email("quota")
    made = run_cli(
        "admin", "create-user", "--email", email, "--password", PASSWORD,
        "--data-dir", str(tmp_path), env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    team = _team_of(tmp_path, fresh_db, email)

    shown = run_cli("admin", "show-quota", "--team", team, "--data-dir", str(tmp_path), env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["team_id"] == team
    assert report["limits"] == {
        "vcpu": 12,  # from HANGAR_QUOTAS__VCPU
        "memory_mib": 131072,
        "disk_gib": 2048,
        "snapshot_count": 100,
    }
    assert report["usage"] == {"vcpu": 0, "memory_mib": 0, "disk_gib": 0, "snapshot_count": 0}

    changed = run_cli(
        "admin", "set-quota", "--team", team, "--vcpu", "4", "--disk-gib", "50",
        "--snapshots", "0", "--data-dir", str(tmp_path), env=env,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert "vcpu=4" in changed.stderr
    assert "snapshots=0" in changed.stderr
    again = run_cli("admin", "show-quota", "--team", team, "--data-dir", str(tmp_path), env=env)
    assert json.loads(again.stdout)["limits"] == {
        "vcpu": 4,
        "memory_mib": 131072,
        "disk_gib": 50,
        "snapshot_count": 0,
    }

    missing = run_cli(
        "admin", "set-quota", "--team", "no-such-team", "--vcpu", "1",
        "--data-dir", str(tmp_path), env=env,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    unknown = run_cli(
        "admin", "show-quota", "--team", "no-such-team", "--data-dir", str(tmp_path), env=env
    )
    assert unknown.returncode == 1
    negative = run_cli(
        "admin", "set-quota", "--team", team, "--vcpu", "-1", "--data-dir", str(tmp_path), env=env
    )
    assert negative.returncode != 0
