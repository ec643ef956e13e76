"""The face registry: a throw-away face registered with one line is served like Wrenn and
FastVM, at `/<name>` on the main port and at the root of its own port, in its own shape."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from hangar.faces import fastvm, wrenn
from hangar.server.app import FACE_NAMES, build_faces
from hangar.server.faces import FACES
from hangar.server.run import face_servers
from hangar.web.registry import settings_section
from kit import demo_face
from kit.conftest import GREETING, DemoServer

CID = "kit-correlation-1"


@pytest.fixture(params=["main", "own"])
def base(request: pytest.FixtureRequest, demo: DemoServer) -> str:
    """The demo face on the main port (`/demo`) and on its own port's root."""
    return demo.main_url if request.param == "main" else demo.face_url


def test_the_registry_names_every_face() -> None:
    assert FACE_NAMES == ("wrenn", "fastvm")
    assert [spec.name for spec in FACES] == [wrenn.NAME, fastvm.NAME]


def test_served_with_its_settings_and_document(base: str) -> None:
    hello = httpx.get(f"{base}/v1/hello")
    assert hello.status_code == 200
    assert hello.json() == {"greeting": GREETING}  # HANGAR_DEMO__GREETING, no Settings line
    doc = httpx.get(f"{base}/openapi.json").json()
    assert (doc["info"]["title"], doc["info"]["version"]) == ("Demo API", "9.9.9")
    assert "/v1/widgets" in doc["paths"]
    made = httpx.post(f"{base}/v1/widgets", json={"name": "w", "size": 2})
    assert (made.status_code, made.json()) == (201, {"name": "w", "size": 2})


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body: dict[str, object] = resp.json()
    assert set(body) == {"code", "message", "correlation_id", "details"}, body
    assert body["code"] == code, body
    assert body["correlation_id"] == CID, body
    return body


def test_every_error_in_its_own_shape(base: str) -> None:
    with httpx.Client(base_url=base, headers={"X-Correlation-Id": CID}) as c:
        # A domain error: a code the face knows by name is kept, others get the table's.
        missing = _error(c.get("/v1/widgets/w1"), 404, "widget_not_found")
        assert missing["message"] == "no widget w1"
        _error(c.post("/v1/widgets/w1/lock"), 409, "conflict")
        invalid = _error(
            c.post("/v1/widgets", json={"name": "", "size": 0}), 400, "invalid_request"
        )
        details = invalid["details"]
        assert isinstance(details, list)
        assert {d["field"] for d in details} == {"name", "size"}
        assert all(d["message"] for d in details)
        _error(
            c.post("/v1/widgets", content=b"{", headers={"Content-Type": "application/json"}),
            400,
            "invalid_request",
        )
        _error(c.get("/v1/nothing-here"), 404, "not_found")
        wrong = c.delete("/v1/widgets")
        _error(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"
        boom = _error(c.get("/v1/boom"), 500, "internal_error")
        assert boom["message"] == "internal error"  # nothing of the exception leaks
        _error(c.get("/v1/secret"), 500, "internal_error")


def test_a_face_port_for_an_unknown_face_is_refused(demo: DemoServer) -> None:
    assert demo.live.app is not None
    settings = demo.live.settings.model_copy(update={"face_ports": {"nope": 1}})
    with pytest.raises(SystemExit, match="nope"):
        face_servers(demo.live.app, settings)


def test_two_faces_cannot_share_a_name(demo: DemoServer) -> None:
    assert demo.live.app is not None
    clash = dataclasses.replace(demo_face.FACE, title="Another")
    with pytest.raises(ValueError, match="share a name"):
        build_faces(demo.live.app.state.platform, demo.live.settings, (demo_face.FACE, clash))


def test_a_settings_line_makes_the_section_a_typed_field(demo: DemoServer) -> None:
    settings = demo.live.settings
    assert settings_section(wrenn.FACE, settings) is settings.wrenn
    assert settings_section(fastvm.FACE, settings) is settings.fastvm
