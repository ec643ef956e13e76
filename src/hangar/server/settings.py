"""All settings of a Hangar process: the core's, the server's and each face's."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from hangar.core.config import CoreSettings
from hangar.faces.fastvm.settings import FastVMSettings
from hangar.faces.wrenn.settings import WrennSettings


class OtelSettings(BaseModel):
    """OpenTelemetry traces (`HANGAR_OTEL__*`): off unless an OTLP endpoint is configured."""

    endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (`http://collector:4318`); spans go to "
        "`<endpoint>/v1/traces`. Unset: the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or "
        "`OTEL_EXPORTER_OTLP_ENDPOINT`, else no tracing at all.",
    )
    service_name: str = Field(
        default="hangar", description="`service.name` of the spans (`OTEL_SERVICE_NAME` wins)."
    )

    def enabled(self) -> bool:
        """Whether an endpoint is configured, here or in the standard variables."""
        return bool(self.endpoint or any(os.environ.get(name) for name in STANDARD_ENDPOINTS))


# The OpenTelemetry SDK's own variables, honoured so a stock deployment needs nothing else.
STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


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
    otel: OtelSettings = Field(default_factory=OtelSettings)
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
