"""The Wrenn contract and the schemathesis checks every conformance test applies."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def check_operation(
    schema: schemathesis.BaseSchema,
    operation_id: str,
    prepare: Callable[[Any, str], None],
    *,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    max_examples: int,
    undocumented_but_required: dict[int, str] | None = None,
) -> None:
    """Generate requests for one operation, let `prepare(case, choice)` steer them, check all.

    `undocumented_but_required` maps a status the operation does not document to the only
    Wrenn error code allowed with it (spec gaps a server cannot avoid); such answers still get
    every other check.
    """
    operation = schema.find_operation_by_id(operation_id)
    allowed_gaps = undocumented_but_required or {}

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), choice=st.sampled_from("abc"))
    def run(case: Any, choice: str) -> None:
        prepare(case, choice)
        response = case.call(base_url=base_url, session=session, headers=headers)
        responses = case.operation.definition.raw.get("responses", {})
        code = allowed_gaps.get(response.status_code)
        if code is not None and str(response.status_code) not in responses:
            case.validate_response(response, checks=ALL_BUT_STATUS, headers=headers)
            assert response.json()["error"]["code"] == code, response.text
            return
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
