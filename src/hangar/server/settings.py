"""All settings of a Hangar process: the core's, the server's and each face's."""

from __future__ import annotations

from pydantic import Field

from hangar.core.config import CoreSettings
from hangar.faces.fastvm.settings import FastVMSettings
from hangar.faces.wrenn.settings import WrennSettings


class Settings(CoreSettings):
    """Read from `HANGAR_*` environment variables; nested ones use `__` (HANGAR_WRENN__...)."""

    host: str = "127.0.0.1"
    port: int = 8080
    face_ports: dict[str, int] = Field(
        default_factory=dict, description="Serve a face at the root of its own port too."
    )
    # A face's settings section: optional here (`web.registry.settings_section` reads
    # `HANGAR_<FACE>__*` for a face without a line); one line makes it a typed field.
    wrenn: WrennSettings = Field(default_factory=WrennSettings)
    fastvm: FastVMSettings = Field(default_factory=FastVMSettings)
    agents: dict[str, str] = Field(
        default_factory=dict,
        description="Agents to use, host id -> address (`unix:/path` or `http://host:port`). "
        "`hangar serve` adds its local agent as `local` unless --no-local-agent.",
    )
    agent_token: str | None = Field(
        default=None, description="Bearer token presented to agents listening on TCP."
    )
    internal_url: str | None = Field(
        default=None,
        description="Base URL the other control-plane replicas reach this one's main port at "
        "(relaying calls to the uplink agents connected here); default http://<host>:<port>.",
    )

    def internal_base_url(self) -> str:
        """This replica's internal URL: the configured one, else the main listener's."""
        return (self.internal_url or f"http://{self.host}:{self.port}").rstrip("/")
