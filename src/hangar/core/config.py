"""Settings the core needs, read from the environment (prefix `HANGAR_`)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from limits import parse_many
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?i){_LABEL}(?:\.{_LABEL})*\.?")


def default_data_dir() -> Path:
    """Where Hangar keeps its state when no data directory is given (XDG data home)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hangar"


class GitHubOAuthSettings(BaseModel):
    """A GitHub OAuth app; endpoints are configurable so tests (and GHES) can point elsewhere."""

    client_id: str
    client_secret: SecretStr
    authorize_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105 - a URL
    api_url: str = "https://api.github.com"
    scopes: str = "read:user user:email"


class QuotaSettings(BaseModel):
    """Default per-team limits (`HANGAR_QUOTAS__*`); a team's own row overrides them."""

    vcpu: int = Field(default=64, ge=0, description="vCPUs of a team's live capsules.")
    memory_mib: int = Field(default=131072, ge=0, description="MiB of memory of live capsules.")
    disk_gib: int = Field(
        default=2048, ge=0, description="GiB of disk of live capsules (those with a disk size)."
    )
    snapshot_count: int = Field(default=100, ge=0, description="Snapshots a team may keep.")


class CapsuleSettings(BaseModel):
    """Bounds and timings of capsules."""

    min_vcpus: int = 1
    max_vcpus: int = 8
    min_memory_mb: int = 128
    max_memory_mb: int = 16384
    max_timeout_sec: int = 7 * 24 * 3600
    max_exec_timeout_sec: int = 3600
    max_file_bytes: int = 100 * 1024 * 1024
    reconcile_seconds: float = 2.0
    usage_sample_seconds: float = 30.0
    # An agent sandbox without a capsule row is only destroyed after this long, so that a
    # create whose row is not yet committed is never mistaken for an orphan.
    orphan_grace_seconds: float = 600.0
    max_disk_gb: int = Field(default=1024, ge=1)
    # The writable disk of a capsule created without a size (every Wrenn capsule), enforced
    # by the runtime and counted against the team's disk quota, so no capsule can fill its
    # host's disk.
    default_disk_gb: int = Field(default=10, ge=1)
    # Exec replies keep at most this many bytes of stdout and of stderr each; the rest is
    # dropped and reported as truncated. Agents cut at their own limit too (8 MiB by default).
    exec_output_limit_bytes: int = Field(default=1024 * 1024, ge=1)
    console_token_ttl_seconds: int = Field(default=60, ge=1)
    # A queued capsule is marked `error` after this many failed starts.
    provision_max_attempts: int = Field(default=5, ge=1)
    # The team limits in force; CoreSettings copies its `quotas` (HANGAR_QUOTAS__*) here so
    # every service built from CapsuleSettings enforces the configured defaults.
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)

    @model_validator(mode="after")
    def _default_disk_fits(self) -> CapsuleSettings:
        if self.default_disk_gb > self.max_disk_gb:
            raise ValueError("default_disk_gb must not exceed max_disk_gb")
        return self


class ChannelSettings(BaseModel):
    """Notification delivery."""

    telegram_api_url: str = "https://api.telegram.org"
    max_attempts: int = 8
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 600.0
    send_timeout_seconds: float = 10.0
    poll_seconds: float = 0.5


class OutboundSettings(BaseModel):
    """Requests made on behalf of users (channel tests and deliveries): where they may go."""

    allow_private: bool = Field(
        default=False,
        description="Let them reach loopback, private, link-local and this host's addresses.",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="CIDRs (`10.1.0.0/16`) or host names they may reach though not public.",
    )

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(f"not a CIDR or host name: {entry!r}") from None
        return entries


class HostSettings(BaseModel):
    """Host credentials and liveness."""

    registration_token_ttl_seconds: int = 3600
    token_ttl_seconds: int = 7 * 24 * 3600
    refresh_token_ttl_seconds: int = 60 * 24 * 3600
    # An online host whose last heartbeat is older than this becomes `unreachable`.
    heartbeat_timeout_seconds: float = 90.0
    reconcile_seconds: float = 5.0
    # A configured agent that does not answer a poll within this is taken to be down.
    poll_timeout_seconds: float = Field(default=10.0, gt=0)
    # Placement: a host offers cpu_cores x cpu_overcommit vCPUs and memory_mb x memory_overcommit
    # MB, less the reserve kept for the host itself. Idle capsules use little CPU, so vCPUs are
    # overcommitted generously by default; memory much less.
    cpu_overcommit: float = Field(default=8.0, gt=0)
    memory_overcommit: float = Field(default=1.5, gt=0)
    reserve_vcpus: float = Field(default=0.0, ge=0)
    reserve_memory_mb: int = Field(default=512, ge=0)
    # Region label of configured agents (the local one, HANGAR_AGENTS) for placement by region.
    region: str = Field(default="local", pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


class RequestLimitSettings(BaseModel):
    """What one client may send (`HANGAR_LIMITS__*`): body sizes and sign-in attempts."""

    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest request body but file uploads (413)."
    )
    # `limits` notation, several joined by `;` ("10/minute;100/hour"). Every attempt counts
    # (not only failures), so concurrent guesses cannot all pass before the first fails.
    auth_per_account: str = Field(
        default="10/minute", description="Sign-in and token attempts per account (429)."
    )
    auth_per_address: str = Field(
        default="60/minute", description="Sign-in and token attempts per client address (429)."
    )

    @field_validator("auth_per_account", "auth_per_address")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_many(value)  # a ValueError names what is wrong with it
        return value


class RateLimitSettings(BaseModel):
    """Requests one principal may make per route class (`HANGAR_RATE_LIMITS__*`, 429)."""

    # One `limits` item each ("600/minute"), counted in windows aligned to the clock, so a
    # request costs one counter increment (sign-in has its own throttle: `limits`).
    read: str = Field(default="1200/minute", description="GET and HEAD requests per principal.")
    write: str = Field(default="600/minute", description="Other requests per principal.")
    exec: str = Field(
        default="300/minute", description="Command runs and stream/console opens per principal."
    )

    @field_validator("read", "write", "exec")
    @classmethod
    def _parses(cls, value: str) -> str:
        if len(parse_many(value)) != 1:  # a ValueError names what is wrong with it
            raise ValueError("one limit per route class, like 600/minute")
        return value


class IdempotencySettings(BaseModel):
    """How long `Idempotency-Key` records live and how a repeat waits (`HANGAR_IDEMPOTENCY__*`)."""

    ttl_seconds: int = Field(
        default=24 * 3600, ge=60, description="How long a key's stored response is replayed."
    )
    wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a repeat waits for the first request with its key to finish "
        "before it is refused with 409.",
    )
    lease_seconds: int = Field(
        default=300,
        ge=1,
        description="A key whose request has run this long without finishing is taken to "
        "belong to a crashed replica, and a repeat may run the request again.",
    )


class CoreSettings(BaseSettings):
    """Everything the core reads from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="HANGAR_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file in the data directory.",
    )
    database_echo: bool = False
    jwt_signing_keys: list[SecretStr] = Field(
        default_factory=list,
        description="JWKs (JSON). The first signs, all verify. Generated and kept in the "
        "data directory when empty.",
    )
    jwt_issuer: str = "hangar"
    user_token_ttl_seconds: int = 6 * 3600
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long an API key's principal is cached per process (0: off). A "
        "deletion drops it at once here; other replicas may accept it this long.",
    )
    public_url: str | None = Field(
        default=None, description="Base URL clients reach this server at (OAuth callbacks)."
    )
    oauth_github: GitHubOAuthSettings | None = None
    capsules: CapsuleSettings = Field(default_factory=CapsuleSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    hosts: HostSettings = Field(default_factory=HostSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    sealing_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Base64 AES-256 keys sealing channel secrets; the first seals, all open. "
        "Generated and kept in the data directory when empty.",
    )
    nats_url: str | None = Field(
        default=None, description="NATS server with JetStream; events are published there when set."
    )
    nats_stream: str = "HANGAR"
    nats_subject_prefix: str = "hangar.events"
    redis_url: str | None = Field(
        default=None, description="Redis shared by replicas for rate limits; else in memory."
    )
    limits: RequestLimitSettings = Field(default_factory=RequestLimitSettings)
    idempotency: IdempotencySettings = Field(default_factory=IdempotencySettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    log_level: str = "info"
    log_format: str = Field(
        default="auto",
        pattern="^(auto|json|console)$",
        description="`auto`: console lines when stderr is a terminal, JSON lines otherwise.",
    )

    @model_validator(mode="after")
    def _share_quotas(self) -> CoreSettings:
        # The same object, so a later change to `quotas` is seen by capsule services too.
        self.capsules.quotas = self.quotas
        return self

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, else SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'hangar.db'}"
