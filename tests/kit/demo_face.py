"""A throw-away face, declared as every face is: all of it here, plus one line naming it.

Its error shape is GPUaaS's (`{code, message, correlation_id, details}`), unlike both real
faces, so the tests can tell that every failure goes through its renderer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from hangar.core import errors as core
from hangar.web.errors import Details, ErrorStyle
from hangar.web.registry import FaceSpec

NAME = "demo"


class DemoSettings(BaseModel):
    """Read from `HANGAR_DEMO__*`, with no line in the server's Settings."""

    greeting: str = "hello"


def _settings(conn: HTTPConnection) -> DemoSettings:
    settings: DemoSettings = conn.app.state.face_settings
    return settings


router = APIRouter(prefix="/v1")


class Widget(BaseModel):
    name: str = Field(min_length=1)
    size: int = Field(ge=1)


@router.get("/hello")
async def hello(settings: Annotated[DemoSettings, Depends(_settings)]) -> dict[str, str]:
    return {"greeting": settings.greeting}


@router.post("/widgets", status_code=201)
async def create_widget(widget: Widget) -> Widget:
    return widget


@router.get("/widgets/{name}")
async def get_widget(name: str) -> Widget:
    raise core.NotFound(f"no widget {name}", code="widget_not_found")


@router.post("/widgets/{name}/lock")
async def lock_widget(name: str) -> Widget:
    raise core.Conflict(f"widget {name} is locked", code="widget_locked")


@router.get("/secret")
async def secret() -> None:
    raise core.Forbidden("not for you")  # a domain error the face's table does not map


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("the demo face broke")


def render(
    conn: HTTPConnection, status: int, code: str, message: str, details: Details | None
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "correlation_id": getattr(conn.state, "correlation_id", None),
        "details": details or [],
    }
    return JSONResponse(body, status_code=status)


FACE = FaceSpec(
    name=NAME,
    title="Demo API",
    version="9.9.9",
    description="A face that exists only in the tests.",
    routers=[router],
    errors=ErrorStyle(
        render=render,
        statuses=[
            (core.InvalidInput, 422, "bad_input"),
            (core.NotFound, 404, "missing"),
            (core.Conflict, 409, "conflict"),
        ],
        known_codes=frozenset({"widget_not_found"}),
    ),
    settings=DemoSettings,
    authenticators=("api_key",),
)
