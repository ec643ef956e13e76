"""The README's promises: two quick-start commands, a working curl walk-through, real settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hangar.agent.settings import AgentSettings
from hangar.server.settings import Settings
from support.live import REPO_ROOT, LiveServer

README = (REPO_ROOT / "README.md").read_text()
TEST_ONLY = {"TEST_POSTGRES_URL", "TEST_BACKENDS", "SPECS_DIR", "SCHEMATHESIS_EXAMPLES"}


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_quick_start_is_exactly_two_commands() -> None:
    [block, *_] = bash_blocks(section("Quick start"))
    assert block.split("\n")[:-1] == ["scripts/serve", "scripts/test"]
    for script in ("scripts/serve", "scripts/test", ".ci/run"):
        path = REPO_ROOT / script
        assert path.is_file(), script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
    assert "scripts/test" in (REPO_ROOT / ".ci/run").read_text()


READ_BY_THE_TEMPLATE_STORE = {"TEMPLATE_CACHE"}


def test_documented_settings_exist() -> None:
    documented = set(re.findall(r"`HANGAR_([A-Z0-9_]+)`", README))
    assert "DATABASE_URL" in documented
    fields = Settings.model_fields
    agent_fields = AgentSettings.model_fields
    for name in documented - TEST_ONLY - READ_BY_THE_TEMPLATE_STORE:
        if name.startswith("AGENT_") and name.removeprefix("AGENT_").lower() in agent_fields:
            continue  # `hangar agent` reads HANGAR_AGENT_*
        head, _, rest = name.partition("__")
        assert head.lower() in fields, f"README documents HANGAR_{name}, which is not a setting"
        if rest:
            nested = fields[head.lower()].annotation
            model = next(a for a in getattr(nested, "__args__", (nested,)) if a is not type(None))
            assert rest.lower() in model.model_fields, f"HANGAR_{name}"


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the walk-through needs curl and jq"
)
def test_the_curl_walk_through_works(server: LiveServer, tmp_path: Path) -> None:
    [script] = bash_blocks(section("Walk-through"))
    default = "BASE=http://localhost:8080/wrenn"
    assert script.startswith(default)
    script = script.replace(default, f"BASE={server.wrenn_url}", 1)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"email":"ada@example.com","name":"Ada Lovelace"' in out
    assert '"name":"Ada Lovelace Team"' in out
    assert '"role":"owner"' in out
    assert re.search(r'"key_prefix":"wrn_[0-9a-f]{8}\.\.\."', out)
    assert re.search(r'"key":"wrn_[0-9a-f]{32}"', out)
    assert "[]204\n" in out  # curl adds no newline: the empty capsule list, then 204
    assert out.endswith('{"error":{"code":"unauthorized","message":"invalid API key"}}')
    assert not (tmp_path / "key.json").exists()
