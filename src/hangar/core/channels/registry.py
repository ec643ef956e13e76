"""Which providers exist, and how an event reads to a person."""

from __future__ import annotations

from hangar.core.channels.providers.base import Notification, Provider
from hangar.core.channels.providers.chat import (
    Discord,
    GoogleChat,
    Matrix,
    Slack,
    Teams,
    Telegram,
)
from hangar.core.channels.providers.webhook import Webhook
from hangar.core.config import ChannelSettings
from hangar.core.events.envelope import Event

EVENT_TYPES = (
    "capsule.created",
    "capsule.running",
    "capsule.paused",
    "capsule.destroyed",
    "template.snapshot.created",
    "template.snapshot.deleted",
    "host.up",
    "host.down",
)
TEST_EVENT = "channel.test"

_TITLES = {
    "capsule.created": "Capsule created",
    "capsule.running": "Capsule running",
    "capsule.paused": "Capsule paused",
    "capsule.destroyed": "Capsule destroyed",
    "template.snapshot.created": "Snapshot template created",
    "template.snapshot.deleted": "Snapshot template deleted",
    "host.up": "Host up",
    "host.down": "Host down",
    TEST_EVENT: "Test notification",
}


def providers(settings: ChannelSettings) -> dict[str, Provider]:
    """Every provider by name."""
    found: list[Provider] = [
        Discord(),
        Slack(),
        Teams(),
        GoogleChat(),
        Telegram(settings.telegram_api_url),
        Matrix(),
        Webhook(),
    ]
    return {p.name: p for p in found}


def notification(event: Event) -> Notification:
    """An event as a short human message (ids are the core's; faces may map them)."""
    details = ", ".join(f"{k}={v}" for k, v in sorted(event.payload.items()) if v is not None)
    return Notification(
        event_id=event.id,
        event_type=event.type,
        title=_TITLES.get(event.type, event.type),
        text=details or event.type,
        event=event.to_dict(),
    )
