"""Templates as plain directories, for the fake runtime in tests."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

from hangar.agent.service import TemplateMissing
from hangar.agentproto.models import Template, TemplateBuild


class DirTemplates:
    """`<root>/<name>/` is a template's rootfs; `minimal` is created empty on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._snapshots = root / ".snapshots"
        self._snapshots.mkdir(exist_ok=True)

    async def ensure(self, name: str) -> Path:
        """The template's directory."""
        path = self.root / name
        if name == "minimal":
            (path / "home" / "user").mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise TemplateMissing(f"no template named {name}")
        return path

    def building(self) -> builtins.list[TemplateBuild]:
        """Nothing to build: `minimal` is an empty directory."""
        return []

    def allows_nested_userns(self, name: str) -> bool:
        """Plain directories carry no options: never."""
        return False

    def snapshot_dest(self, name: str) -> Path:
        """Where a snapshot's files go."""
        return self.root / name

    def register_snapshot(self, name: str) -> None:
        """Mark a written directory as a snapshot."""
        (self._snapshots / name).touch()

    def list(self) -> list[Template]:
        """Every template directory."""
        out = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith("."):
                continue
            kind = "snapshot" if (self._snapshots / path.name).exists() else "base"
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            out.append(
                Template(
                    name=path.name, type=kind, size_bytes=size, created_at=path.stat().st_mtime
                )
            )
        return out

    def delete(self, name: str) -> None:
        """Remove a snapshot template."""
        if (self._snapshots / name).exists():
            shutil.rmtree(self.root / name, ignore_errors=True)
            (self._snapshots / name).unlink()
