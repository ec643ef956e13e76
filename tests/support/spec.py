"""The Wrenn contract and the schemathesis checks every conformance test applies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.live import REPO_ROOT

SPECS_DIR = Path(os.environ.get("HANGAR_SPECS_DIR") or REPO_ROOT.parent / "shared" / "specs")
WRENN_SPEC = SPECS_DIR / "wrenn-openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ALL_BUT_STATUS = [c for c in CHECKS if c is not status_code_conformance]


def load_wrenn_schema() -> schemathesis.BaseSchema:
    """The Wrenn OpenAPI document, or skip when this checkout has no specs beside it."""
    if not WRENN_SPEC.is_file():
        pytest.skip(f"{WRENN_SPEC} not found; set HANGAR_SPECS_DIR to the directory holding it")
    return schemathesis.openapi.from_path(WRENN_SPEC)
