"""The one error path: shared handlers, each face's shape; 405 stays 405; a 500 is logged."""

from __future__ import annotations

import logging

import httpx
import pytest

from kit.conftest import DemoServer
from support.live import LiveServer


def test_fastvm_answers_405_in_its_shape(server: LiveServer) -> None:
    wrong = httpx.put(f"{server.url}/fastvm/v1/vms")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "method not allowed"}
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    unknown = httpx.get(f"{server.url}/fastvm/v1/nothing-here")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "not found"})


def test_wrenn_keeps_its_405_and_404(server: LiveServer) -> None:
    wrong = httpx.put(f"{server.url}/wrenn/v1/auth/login")
    assert wrong.status_code == 405
    assert wrong.json() == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
    }
    assert wrong.headers["allow"] == "POST"
    unknown = httpx.get(f"{server.url}/wrenn/v1/nothing-here")
    assert unknown.json() == {"error": {"code": "not_found", "message": "Not Found"}}


def _logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event]


@pytest.mark.parametrize("port", ["main", "own"])
def test_an_unexpected_exception_is_a_logged_500_in_the_face_shape(
    demo: DemoServer, port: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = demo.main_url if port == "main" else demo.face_url
    caplog.set_level(logging.ERROR)
    resp = httpx.get(f"{base}/v1/boom", headers={"X-Correlation-Id": "kit-boom"})
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error"
    assert resp.json()["correlation_id"] == resp.headers["x-correlation-id"] == "kit-boom"
    [record] = _logged(caplog, "unhandled error")
    exc = record.msg["exc_info"]  # type: ignore[index]
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "the demo face broke"
    assert exc.__traceback__ is not None


def test_a_domain_error_the_table_lacks_is_a_logged_500(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    resp = httpx.get(f"{demo.main_url}/v1/secret")
    assert (resp.status_code, resp.json()["code"]) == (500, "internal_error")
    assert "not for you" not in resp.text
    [record] = _logged(caplog, "domain error without a status")
    assert record.msg["error"] == "Forbidden"  # type: ignore[index]
