"""Generic webhooks, signed with HMAC-SHA256 over `timestamp.body`."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import httpx

from hangar.core.channels.providers.base import Notification, Provider, post_json

SIGNATURE_HEADER = "X-Hangar-Signature"
TIMESTAMP_HEADER = "X-Hangar-Timestamp"
DELIVERY_HEADER = "X-Hangar-Delivery"
EVENT_HEADER = "X-Hangar-Event"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def new_secret() -> str:
    """A webhook secret: 32 random bytes, hex."""
    return f"whsec_{secrets.token_hex(32)}"


class Webhook(Provider):
    """POSTs the event as JSON to `url`."""

    name, required, url_fields = "webhook", ("url", "secret"), ("url",)

    def normalise(self, config: dict[str, str]) -> dict[str, str]:
        """A missing secret is generated (and shown once, on creation)."""
        config = dict(config)
        if not str(config.get("secret") or "").strip():
            config["secret"] = new_secret()
        return super().normalise(config)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        body = json.dumps(note.event or {"type": note.event_type}, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(config["secret"], timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: note.event_id,
            EVENT_HEADER: note.event_type,
        }
        await post_json(http, "POST", config["url"], None, headers=headers, content=body)
