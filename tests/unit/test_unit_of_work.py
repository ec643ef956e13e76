"""Only the unit of work commits: no code outside `core/db/uow.py` calls a session's commit."""

from __future__ import annotations

import ast
from pathlib import Path

import hangar

SRC = Path(hangar.__file__).parent
HOME = SRC / "core" / "db" / "uow.py"


def commits(path: Path) -> list[str]:
    """`x.commit()` calls in `path` whose receiver is not a unit of work (`uow`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "uow")
        ):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_nothing_but_the_unit_of_work_commits() -> None:
    offenders = [hit for path in SRC.rglob("*.py") if path != HOME for hit in commits(path)]
    assert offenders == []


def test_the_check_sees_a_commit() -> None:
    assert commits(HOME) != []
