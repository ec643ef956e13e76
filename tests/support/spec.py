"""The Wrenn contract and the schemathesis runs and checks every conformance test applies."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
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


class SpecWorld(Protocol):
    """A conformance test's world: a client on the face's base URL and a requests session."""

    @property
    def http(self) -> httpx.Client: ...

    @property
    def session(self) -> requests.Session: ...


W = TypeVar("W", bound=SpecWorld)


def check_steered(
    schema: schemathesis.BaseSchema,
    world: W,
    operation_id: str,
    prepare: Callable[[W, Any, str], None],
    *,
    headers: dict[str, str],
    max_examples: int,
    undocumented_but_required: dict[int, str] | None = None,
) -> None:
    """`check_operation` against `world`'s face, each example steered by `prepare(world, ...)`."""
    check_operation(
        schema,
        operation_id,
        lambda case, choice: prepare(world, case, choice),
        base_url=str(world.http.base_url).rstrip("/"),
        session=world.session,
        headers=headers,
        max_examples=max_examples,
        undocumented_but_required=undocumented_but_required,
    )


def check_invalid_requests(
    schema: schemathesis.BaseSchema,
    operation_id: str,
    prepare: Callable[[Any, str, st.DataObject], dict[str, str]],
    *,
    base_url: str,
    session: requests.Session,
    max_examples: int,
    checks: list[Any],
    face_prefix: str,
) -> None:
    """Negative mode: requests that break the spec get a 4xx in the face's `{"error": ...}` shape.

    `prepare(case, choice, data)` steers each request and returns its headers; every response
    gets `checks`. Generated path parameters may hold `..`, which the client resolves: only
    requests that still land under `face_prefix` owe the face's error shape.
    """
    operation = schema.find_operation_by_id(operation_id)

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        choice=st.sampled_from("abc"),
        data=st.data(),
    )
    def run(case: Any, choice: str, data: st.DataObject) -> None:
        headers = prepare(case, choice, data)
        response = case.call(base_url=base_url, session=session, headers=headers)
        case.validate_response(response, checks=checks, headers=headers)
        inside = urlsplit(response.request.url).path.startswith(face_prefix)
        if response.status_code >= 400 and inside:
            assert set(response.json()) == {"error"}, response.text

    run()
