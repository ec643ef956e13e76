"""Agent settings (env prefix `HANGAR_AGENT_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_agent_dir() -> Path:
    """The agent's state when no directory is given: beside the control plane's data."""
    return Path.home() / ".local" / "share" / "hangar" / "agent"


class AgentSettings(BaseSettings):
    """What one host agent needs."""

    model_config = SettingsConfigDict(env_prefix="HANGAR_AGENT_", extra="ignore")

    data_dir: Path = Field(default_factory=default_agent_dir)
    listen: str = Field(
        default="", description="`unix:/path` or `host:port`; default a socket in data_dir."
    )
    token: SecretStr | None = Field(
        default=None, description="Bearer token callers must present (TCP listeners)."
    )
    runtime: str = Field(default="jail", pattern="^(jail|fake)$")
    fake_gpus: str | None = Field(
        default=None,
        description="Tests only (needs runtime `fake`): a JSON list of GPUs to report "
        "instead of NVML's.",
    )
    template_cache: Path | None = Field(
        default=None, description="Where base templates are built and kept (shared by agents)."
    )
    debian_mirror: str | None = None
    pty_idle_timeout: float = 120.0
    pty_replay_bytes: int = 256 * 1024
    exec_output_limit: int = 8 * 1024 * 1024
    metrics_interval: float = 0.5
    server: str | None = Field(
        default=None, description="Control plane URL to join (`hangar agent --server`)."
    )
    registration_token: SecretStr | None = Field(
        default=None, description="One-time registration token (`--token`); first start only."
    )
    advertise_address: str | None = Field(
        default=None, description="Address reported at registration; default the host name."
    )
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    ipv6_prefix: str = Field(
        default="fd68:616e:6761::/64",
        description="Prefix networked sandboxes get their routed IPv6 address from.",
    )

    def socket_path(self) -> Path:
        """The Unix socket the agent listens on when `listen` names none."""
        return self.data_dir / "run" / "agent.sock"

    def address(self) -> str:
        """The address a local client dials."""
        if not self.listen:
            return f"unix:{self.socket_path()}"
        if self.listen.startswith("unix:"):
            return self.listen
        return f"http://{self.listen}"
