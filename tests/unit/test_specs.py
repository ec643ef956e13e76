"""The API contracts live in the repository: a fresh clone tests against its own `specs/`."""

from __future__ import annotations

from support.live import REPO_ROOT

SPECS = REPO_ROOT / "specs"
SHARED = REPO_ROOT.parent / "shared" / "specs"
FACES = (
    "wrenn-openapi.yaml",
    "wrenn-openapi-v0.1.5.yaml",
    "fastvm-openapi.yaml",
    "gpugo-openapi.yaml",
    "gpugo-api.md",
    "gpugo-agent-behaviour.md",
    "warpdrive-api.md",
    "gpuaas-rest-api.md",
    "gpuaas-notes.md",
)


def test_every_contract_is_vendored() -> None:
    missing = [name for name in FACES if not (SPECS / name).is_file()]
    assert missing == []


def test_shared_contracts_are_all_vendored() -> None:
    # Where the shared folder sits beside the checkout, nothing in it may be missing here.
    shared = sorted(p.name for p in SHARED.glob("*")) if SHARED.is_dir() else []
    assert [name for name in shared if not (SPECS / name).exists()] == []
