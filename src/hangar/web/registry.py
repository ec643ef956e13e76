"""A face declares itself once (`FaceSpec`); the composition root builds every declared one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from hangar.core.platform import Platform
from hangar.web import errors
from hangar.web.authn.base import Authenticator
from hangar.web.authn.chains import build_chain
from hangar.web.errors import ErrorStyle
from hangar.web.face import Face, new_face_app


@dataclass(frozen=True, slots=True)
class FaceSpec:
    """Everything that makes one face: served at `/<name>` and, optionally, on its own port."""

    name: str
    title: str
    version: str
    description: str
    """The face's OpenAPI document: `title`, `version`, `description` (at `/openapi.json`)."""
    routers: Sequence[APIRouter]
    errors: ErrorStyle
    settings: type[BaseModel] | None = None
    """Its settings section, `HANGAR_<NAME>__*` (read by `settings_section`)."""
    authenticators: tuple[str | Authenticator, ...] = ()
    """The face's authentication chain, tried in order: built-in names (`authn.chains`)
    or configured instances. `hangar.web.authn.authenticate` runs it."""
    configure: Callable[[FastAPI], None] | None = None
    """Anything else the face sets on its app (routing quirks of its wire)."""

    @property
    def prefix(self) -> str:
        """Where the face lives on the main port."""
        return f"/{self.name}"


class _EnvSection(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HANGAR_", env_nested_delimiter="__", extra="ignore"
    )


def settings_section(spec: FaceSpec, settings: object) -> BaseModel | None:
    """The face's settings: `settings.<name>` when the server's Settings declares it (one
    line there), else read from `HANGAR_<NAME>__*` alone, so a new face needs no edit there."""
    if spec.settings is None:
        return None
    given = getattr(settings, spec.name, None)
    if isinstance(given, spec.settings):
        return given
    fields: Any = {spec.name: (spec.settings, Field(default_factory=spec.settings))}
    model = create_model(f"{spec.name}_section", __base__=_EnvSection, **fields)
    section: BaseModel = getattr(model(), spec.name)
    return section


def build_face(spec: FaceSpec, platform: Platform, section: BaseModel | None) -> Face:
    """The face's app on the shared platform: its document, settings, errors and routes."""
    app = new_face_app(
        platform, title=spec.title, version=spec.version, description=spec.description
    )
    # Routes read it through their face's own typed dependency (`deps.get_settings`).
    app.state.face_settings = section
    app.state.face_spec = spec
    app.state.auth_chain = build_chain(spec.authenticators)
    errors.install(app, spec.errors)
    if spec.configure is not None:
        spec.configure(app)
    for router in spec.routers:
        app.include_router(router)
    return Face(spec.name, app)
