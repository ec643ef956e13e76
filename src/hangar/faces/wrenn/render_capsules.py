"""Core capsule objects to Wrenn wire models."""

from __future__ import annotations

import base64

from hangar.agentproto.models import FileEntry as AgentEntry
from hangar.agentproto.models import MetricPoint as AgentPoint
from hangar.core.capsules.models import Capsule as CoreCapsule
from hangar.core.capsules.service import ExecOutcome
from hangar.core.capsules.usage import TeamStats
from hangar.core.snapshots.templates import TemplateView
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import schemas as w


def capsule(c: CoreCapsule) -> w.Capsule:
    """A Capsule."""
    return w.Capsule(
        id=ids.encode(ids.CAPSULE, c.id),
        status=c.status,
        template=c.template,
        vcpus=c.vcpus,
        memory_mb=c.memory_mb,
        timeout_sec=c.timeout_sec,
        guest_ip=c.guest_ip,
        host_ip=c.host_ip,
        created_at=c.created_at,
        started_at=c.started_at,
        last_active_at=c.last_active_at,
        last_updated=c.updated_at,
    )


def exec_response(capsule_id: str, cmd: str, out: ExecOutcome) -> w.ExecResponse:
    """An ExecResponse: text when both streams are UTF-8, else both in base64."""
    try:
        stdout, stderr = out.stdout.decode(), out.stderr.decode()
        encoding = "utf-8"
    except UnicodeDecodeError:
        stdout = base64.b64encode(out.stdout).decode()
        stderr = base64.b64encode(out.stderr).decode()
        encoding = "base64"
    return w.ExecResponse(
        sandbox_id=capsule_id,
        cmd=cmd,
        stdout=stdout,
        stderr=stderr,
        exit_code=out.exit_code,
        duration_ms=out.duration_ms,
        encoding=encoding,
    )


def stats(s: TeamStats) -> w.CapsuleStats:
    """CapsuleStats."""
    return w.CapsuleStats(
        range=s.range,
        current=w.StatsCurrent(
            running_count=s.running,
            vcpus_reserved=s.vcpus,
            memory_mb_reserved=s.memory_mb,
            sampled_at=s.sampled_at,
        ),
        peaks=w.StatsPeaks(
            running_count=s.peak_running, vcpus=s.peak_vcpus, memory_mb=s.peak_memory_mb
        ),
        series=w.StatsSeries(
            labels=s.series.labels,
            running=s.series.running,
            vcpus=s.series.vcpus,
            memory_mb=s.series.memory_mb,
        ),
    )


def metrics(capsule_id: str, range_: str, points: list[AgentPoint]) -> w.CapsuleMetrics:
    """CapsuleMetrics."""
    return w.CapsuleMetrics(
        sandbox_id=capsule_id,
        range=range_,
        points=[w.MetricPoint(**p.model_dump()) for p in points],
    )


def template(t: TemplateView) -> w.Template:
    """A Template."""
    return w.Template(
        name=t.name,
        type=t.kind.value,
        vcpus=t.vcpus,
        memory_mb=t.memory_mb,
        size_bytes=t.size_bytes,
        created_at=t.created_at,
    )


def entry(e: AgentEntry) -> w.FileEntry:
    """A FileEntry."""
    return w.FileEntry(**e.model_dump())
