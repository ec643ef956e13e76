"""The event as every sink and listener sees it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hangar.core.events.models import OutboxEvent


@dataclass(frozen=True)
class Event:
    """An immutable event; consumers dedupe by `id`."""

    id: str
    type: str
    version: int
    occurred_at: datetime
    correlation_id: str | None
    team_id: str | None
    payload: dict[str, Any]

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        """The envelope of an outbox row."""
        return cls(
            row.id,
            row.type,
            row.version,
            row.occurred_at,
            row.correlation_id,
            row.team_id,
            dict(row.payload),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "correlation_id": self.correlation_id,
            "team_id": self.team_id,
            "payload": self.payload,
        }

    def to_json(self) -> bytes:
        """Compact JSON bytes."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Event:
        """Parse what `to_json` wrote."""
        return cls.from_dict(json.loads(data))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Parse what `to_dict` wrote."""
        return cls(
            raw["id"],
            raw["type"],
            int(raw["version"]),
            datetime.fromisoformat(raw["occurred_at"].replace("Z", "+00:00")),
            raw.get("correlation_id"),
            raw.get("team_id"),
            raw.get("payload") or {},
        )
