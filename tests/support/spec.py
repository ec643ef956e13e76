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

# The contracts live in the repository (`specs/`, a copy of the shared ones), so a fresh clone
# tests them; a missing document fails the suite instead of skipping its contract tests.
SPECS_DIR = Path(os.environ.get("HANGAR_SPECS_DIR") or REPO_ROOT / "specs")
WRENN_SPEC = SPECS_DIR / "wrenn-openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ALL_BUT_STATUS = [c for c in CHECKS if c is not status_code_conformance]
# Strings no UTF-8 consumer (a database, a hash, the agent's JSON) can encode: a lone half of a
# surrogate pair, alone or amid text. Every face must refuse a JSON body holding one with 400
# in its error shape, never a 500; one generated example in SURROGATE_ONE_IN gets one.
LONE_SURROGATES = st.builds(
    lambda before, half, after: before + half + after,
    st.text(max_size=3),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(max_size=3),
)
SURROGATE_ONE_IN = 4
# Snapshots copy a root filesystem: on this class of machine that is I/O-bound and takes 2-15 s
# (schemathesis's default of 10 s made createSnapshot flaky); still a bound, never a hang.
REQUEST_TIMEOUT = 60


def load_wrenn_schema() -> schemathesis.BaseSchema:
    """The Wrenn OpenAPI document."""
    return load_spec(WRENN_SPEC)


def load_spec(path: Path) -> schemathesis.BaseSchema:
    """An OpenAPI document of `specs/`; a missing one is a failure, never a skip."""
    if not path.is_file():
        pytest.fail(f"{path} not found: the contracts belong in the repository's specs/")
    return schemathesis.openapi.from_path(path)


def with_lone_surrogate(case: Any, data: st.DataObject) -> bool:
    """Maybe put a lone surrogate into one key or string of the case's JSON body; whether it did.

    Only JSON bodies: multipart fields are decoded leniently (a surrogate becomes U+FFFD).
    """
    body = case.body
    if not isinstance(body, dict | list) or "json" not in (case.media_type or ""):
        return False
    if data.draw(st.integers(0, SURROGATE_ONE_IN - 1), label="lone surrogate") != 0:
        return False
    slots: list[tuple[Any, Any, bool]] = []  # (container, key or index, whether it is a key)
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for k, v in items:
            if isinstance(node, dict):
                slots.append((node, k, True))
            if isinstance(v, str):
                slots.append((node, k, False))
            elif isinstance(v, dict | list):
                stack.append(v)
    text = data.draw(LONE_SURROGATES, label="surrogate text")
    if not slots:
        if isinstance(body, dict):
            body[text] = text
        else:
            body.append(text)
        return True
    node, k, is_key = data.draw(st.sampled_from(slots), label="where")
    if is_key:
        node[text] = node.pop(k)
    else:
        node[k] = text
    return True


def assert_refused_as_invalid(case: Any, response: Any, headers: dict[str, str]) -> None:
    """A body with a lone surrogate: 400 in the face's `{"error": ...}` shape, nothing else."""
    case.validate_response(response, checks=ALL_BUT_STATUS, headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}, response.text


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
    @given(case=operation.as_strategy(), choice=st.sampled_from("abc"), data=st.data())
    def run(case: Any, choice: str, data: st.DataObject) -> None:
        prepare(case, choice)
        if with_lone_surrogate(case, data):
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT
            )
            assert_refused_as_invalid(case, response, headers)
            return
        response = case.call(
            base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT
        )
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
        with_lone_surrogate(case, data)  # still a 4xx in the face's shape
        response = case.call(
            base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT
        )
        case.validate_response(response, checks=checks, headers=headers)
        inside = urlsplit(response.request.url).path.startswith(face_prefix)
        if response.status_code >= 400 and inside:
            assert set(response.json()) == {"error"}, response.text

    run()
