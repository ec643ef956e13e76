"""Wrenn's wire models, field for field as `wrenn-openapi.yaml` names them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

RoleName = Literal["owner", "admin", "member"]


class Wire(BaseModel):
    """Base of request bodies: unknown fields are ignored, as Wrenn does."""

    model_config = ConfigDict(extra="ignore")


class SignupRequest(Wire):
    email: str
    password: str
    name: str


class LoginRequest(Wire):
    email: str
    password: str


class SwitchTeamRequest(Wire):
    team_id: str


class AuthResponse(BaseModel):
    token: str
    user_id: str
    team_id: str
    email: str
    name: str


class CreateAPIKeyRequest(Wire):
    name: str | None = None


class APIKeyResponse(BaseModel):
    id: str
    team_id: str
    name: str
    key_prefix: str
    created_by: str | None = None
    created_at: datetime
    last_used: datetime | None = None
    key: str | None = None


class UserSearchResult(BaseModel):
    user_id: str
    email: str


class TeamNameRequest(Wire):
    name: str


class Team(BaseModel):
    id: str
    name: str
    slug: str
    created_at: datetime


class TeamWithRole(Team):
    role: RoleName


class TeamMember(BaseModel):
    user_id: str
    email: str
    name: str
    role: RoleName
    joined_at: datetime


class TeamDetail(BaseModel):
    team: Team
    members: list[TeamMember]


class AddMemberRequest(Wire):
    email: str


class UpdateRoleRequest(Wire):
    role: Literal["admin", "member"]
