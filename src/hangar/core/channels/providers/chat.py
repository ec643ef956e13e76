"""Chat webhooks: Discord, Slack, Microsoft Teams, Google Chat, and bot APIs: Telegram, Matrix."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx

from hangar.core.channels.providers.base import Notification, Provider, post_json


class Discord(Provider):
    """Discord incoming webhook: `{"content", "embeds"}`."""

    name, required, url_fields = "discord", ("webhook_url",), ("webhook_url",)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        body = {
            "content": f"**{note.title}**",
            "embeds": [{"title": note.event_type, "description": note.text}],
        }
        await post_json(http, "POST", config["webhook_url"], body)


class Slack(Provider):
    """Slack incoming webhook: `{"text", "blocks"}`."""

    name, required, url_fields = "slack", ("webhook_url",), ("webhook_url",)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        body = {
            "text": f"{note.title}: {note.text}",
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*{note.title}*\n{note.text}"},
                }
            ],
        }
        await post_json(http, "POST", config["webhook_url"], body)


class Teams(Provider):
    """Microsoft Teams incoming webhook: a MessageCard."""

    name, required, url_fields = "teams", ("webhook_url",), ("webhook_url",)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        body = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": note.title,
            "title": note.title,
            "text": note.text,
        }
        await post_json(http, "POST", config["webhook_url"], body)


class GoogleChat(Provider):
    """Google Chat incoming webhook: `{"text"}`."""

    name, required, url_fields = "googlechat", ("webhook_url",), ("webhook_url",)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        await post_json(
            http, "POST", config["webhook_url"], {"text": f"*{note.title}*\n{note.text}"}
        )


class Telegram(Provider):
    """Telegram Bot API `sendMessage`; the API base URL is a setting (tests point it locally)."""

    name, required = "telegram", ("bot_token", "chat_id")

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        # Quoted, so that a token cannot climb out of its path segment on the API host.
        url = f"{self.api_url}/bot{quote(config['bot_token'], safe=':')}/sendMessage"
        body = {"chat_id": config["chat_id"], "text": f"{note.title}\n{note.text}"}
        # The operator configured the API base (the token only adds to its path), so this
        # request may reach it wherever it is; the token never appears in an error.
        await post_json(http, "POST", url, body, operator_endpoint=True)


class Matrix(Provider):
    """Matrix client-server API: `m.room.message` into a room on the configured homeserver."""

    name = "matrix"
    required = ("homeserver_url", "access_token", "room_id")
    url_fields = ("homeserver_url",)

    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        base = config["homeserver_url"].rstrip("/")
        room = quote(config["room_id"], safe="")
        # The event id as transaction id makes a retried send idempotent on the homeserver.
        txn = quote(note.event_id or uuid.uuid4().hex, safe="")
        url = f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
        body = {"msgtype": "m.text", "body": f"{note.title}\n{note.text}"}
        headers = {"Authorization": f"Bearer {config['access_token']}"}
        await post_json(http, "PUT", url, body, headers=headers)
