"""Tables of the GPU sharing feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base, TimestampedModel
from hangar.core.db.base import StatusText


class AgentStatus(enum.StrEnum):
    """A GPU agent is `online` while it reports (GPU Go: offline after 3 minutes silent)."""

    PENDING = "pending"
    ONLINE = "online"
    OFFLINE = "offline"


class WorkerStatus(enum.StrEnum):
    """Lifecycle of a worker (lifecycle.py has its transitions)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class GpuAgent(TimestampedModel):
    """A machine of a team's that shares its GPUs; it authenticates with a hashed secret."""

    __tablename__ = "gpu_agents"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    hostname: Mapped[str] = mapped_column(String(255))
    os: Mapped[str] = mapped_column(String(20))
    arch: Mapped[str] = mapped_column(String(20))
    network_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[AgentStatus] = mapped_column(
        StatusText(AgentStatus), default=AgentStatus.PENDING
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped by every worker change; the agent pulls its config when it sees a new one.
    config_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentGpu(Base):
    """One GPU an agent reported; `gpu_id` is the agent's own name for it (`GPU-0`)."""

    __tablename__ = "gpu_agent_gpus"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("gpu_agents.id", ondelete="CASCADE"), primary_key=True
    )
    gpu_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    vram_mb: Mapped[int] = mapped_column(Integer)
    driver_version: Mapped[str | None] = mapped_column(String(64), default=None)
    cuda_version: Mapped[str | None] = mapped_column(String(64), default=None)
    used_by_worker: Mapped[str | None] = mapped_column(String(36), default=None)


class GpuWorker(TimestampedModel):
    """A process on an agent serving some of its GPUs on a port."""

    __tablename__ = "gpu_workers"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("gpu_agents.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    gpu_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    listen_port: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[WorkerStatus] = mapped_column(
        StatusText(WorkerStatus), default=WorkerStatus.PENDING
    )
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    vram_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    compute_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    isolation_mode: Mapped[str | None] = mapped_column(String(8), default=None)
    # The agent's last report: [{"client_ip", "connected_at"}].
    connections: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ShareLink(TimestampedModel):
    """A short link to a worker; opening it counts a use, up to `max_uses`, until `expires_at`."""

    __tablename__ = "gpu_share_links"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[str] = mapped_column(
        ForeignKey("gpu_workers.id", ondelete="CASCADE"), index=True
    )
    short_code: Mapped[str] = mapped_column(String(16), unique=True)
    connection_ip: Mapped[str] = mapped_column(String(255))
    hardware_vendor: Mapped[str] = mapped_column(String(16))
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    # Only ever raised by the one conditional UPDATE in ShareRepository.open.
    used_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
