"""The provider interface, and what every provider sends."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import httpx


class ProviderError(Exception):
    """The destination refused or could not be reached; the message says why."""


@dataclass(frozen=True)
class Notification:
    """An event rendered for people, plus the raw event for machines."""

    event_id: str
    event_type: str
    title: str
    text: str
    event: dict[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """Sends notifications to one kind of destination."""

    name: str
    required: tuple[str, ...]
    url_fields: tuple[str, ...] = ()

    def normalise(self, config: dict[str, str]) -> dict[str, str]:
        """The config to store: required fields checked (ValueError), extras dropped."""
        missing = [k for k in self.required if not str(config.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{self.name} config needs {', '.join(missing)}")
        for key in self.url_fields:
            if not str(config[key]).startswith(("https://", "http://")):
                raise ValueError(f"{key} must be an http(s) URL")
        return {k: str(config[k]).strip() for k in self.required}

    @abc.abstractmethod
    async def send(
        self, http: httpx.AsyncClient, config: dict[str, str], note: Notification
    ) -> None:
        """Deliver one notification or raise ProviderError."""


async def post_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send and turn transport failures and non-2xx answers into ProviderError."""
    try:
        if content is not None:
            response = await http.request(method, url, content=content, headers=headers)
        else:
            response = await http.request(method, url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ProviderError(f"cannot reach {httpx.URL(url).host}: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        detail = response.text[:300].strip()
        raise ProviderError(f"HTTP {response.status_code} from {httpx.URL(url).host}: {detail}")
    return response
