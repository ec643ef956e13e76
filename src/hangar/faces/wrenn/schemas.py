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


# capsules --------------------------------------------------------------------------------

CapsuleStatusName = Literal[
    "pending", "starting", "running", "paused", "hibernated", "stopped", "missing", "error"
]


class CreateCapsuleRequest(Wire):
    template: str = "minimal"
    vcpus: int = 1
    memory_mb: int = 512
    timeout_sec: int = 0


class Capsule(BaseModel):
    id: str
    status: CapsuleStatusName
    template: str
    vcpus: int
    memory_mb: int
    timeout_sec: int
    guest_ip: str
    host_ip: str
    created_at: datetime
    started_at: datetime | None
    last_active_at: datetime | None
    last_updated: datetime


class StatsCurrent(BaseModel):
    running_count: int
    vcpus_reserved: int
    memory_mb_reserved: int
    sampled_at: datetime | None


class StatsPeaks(BaseModel):
    running_count: int
    vcpus: int
    memory_mb: int


class StatsSeries(BaseModel):
    labels: list[datetime]
    running: list[int]
    vcpus: list[int]
    memory_mb: list[int]


class CapsuleStats(BaseModel):
    range: Literal["5m", "1h", "6h", "24h", "30d"]
    current: StatsCurrent
    peaks: StatsPeaks
    series: StatsSeries


class ExecRequest(Wire):
    cmd: str
    args: list[str] = []
    timeout_sec: int = 30
    # v0.1.5 lists these for background exec only; a foreground command gets them too (what a
    # client sending them means), rather than dropping them.
    envs: dict[str, str] = {}
    cwd: str | None = None
    # Background exec (202 with a pid and a tag) is not implemented yet: the route refuses
    # `background: true` with 400 naming it. `tag` is read only with it, so it is ignored.
    background: bool = False
    tag: str | None = None


class ExecResponse(BaseModel):
    sandbox_id: str
    cmd: str
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int
    encoding: Literal["utf-8", "base64"]


class MetricPoint(BaseModel):
    timestamp_unix: int
    cpu_pct: float
    mem_bytes: int
    disk_bytes: int


class CapsuleMetrics(BaseModel):
    sandbox_id: str
    range: Literal["5m", "10m", "1h", "2h", "6h", "12h", "24h"]
    points: list[MetricPoint]


class CreateSnapshotRequest(Wire):
    sandbox_id: str
    name: str | None = None


class Template(BaseModel):
    name: str
    type: Literal["base", "snapshot"]
    vcpus: int | None
    memory_mb: int | None
    size_bytes: int
    created_at: datetime


class ReadFileRequest(Wire):
    path: str


class ListDirRequest(Wire):
    path: str
    depth: int = 1


class FileEntry(BaseModel):
    name: str
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int
    mode: int
    permissions: str
    owner: str
    group: str
    modified_at: int
    symlink_target: str | None


class ListDirResponse(BaseModel):
    entries: list[FileEntry]


class MakeDirRequest(Wire):
    path: str


class MakeDirResponse(BaseModel):
    entry: FileEntry


class RemoveRequest(Wire):
    path: str


# channels --------------------------------------------------------------------------------

ProviderName = Literal["discord", "slack", "teams", "googlechat", "telegram", "matrix", "webhook"]


class CreateChannelRequest(Wire):
    name: str
    provider: ProviderName
    config: dict[str, str]
    events: list[str]


class TestChannelRequest(Wire):
    provider: ProviderName
    config: dict[str, str]


class RotateConfigRequest(Wire):
    config: dict[str, str]


class UpdateChannelRequest(Wire):
    name: str
    events: list[str]


class ChannelResponse(BaseModel):
    id: str
    team_id: str
    name: str
    provider: ProviderName
    events: list[str]
    created_at: datetime
    updated_at: datetime
    secret: str | None = None


class TestChannelResponse(BaseModel):
    status: str


# hosts ------------------------------------------------------------------------------------


class CreateHostRequest(Wire):
    type: str
    team_id: str | None = None
    provider: str | None = None
    availability_zone: str | None = None


class Host(BaseModel):
    id: str
    type: str
    team_id: str | None
    provider: str | None
    availability_zone: str | None
    arch: str | None
    cpu_cores: int | None
    memory_mb: int | None
    disk_gb: int | None
    address: str | None
    status: str
    last_heartbeat_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class CreateHostResponse(BaseModel):
    host: Host
    registration_token: str


class RegisterHostRequest(Wire):
    token: str
    address: str
    arch: str | None = None
    cpu_cores: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None


class HostCredentials(BaseModel):
    """RegisterHostResponse and RefreshHostTokenResponse have the same fields."""

    host: Host
    token: str
    refresh_token: str


class RefreshHostTokenRequest(Wire):
    refresh_token: str


class HostDeletePreview(BaseModel):
    host: Host
    sandbox_ids: list[str]


class AddTagRequest(Wire):
    tag: str
