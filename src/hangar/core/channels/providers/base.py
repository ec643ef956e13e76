"""The provider interface, and what every provider sends."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import httpx

from hangar.core.security.outbound import OPERATOR_ENDPOINT


def _is_http_url(value: str) -> bool:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


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
            if not _is_http_url(str(config[key]).strip()):
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
    *,
    operator_endpoint: bool = False,
) -> int:
    """Send; the status code of a 2xx answer, else ProviderError.

    `http` is the outbound guard's client. The answer's body is never read, let alone shown:
    the channel test would otherwise print what an internal service said. Every failure to
    deliver (a refused destination, a closed port, a timeout, DNS) reads the same, so the
    message is no probe of what lies where.
    """
    try:
        request = http.build_request(
            method,
            url,
            json=body if content is None else None,
            content=content,
            headers=headers,
            extensions=OPERATOR_ENDPOINT if operator_endpoint else None,
        )
        response = await http.send(request, stream=True)
        await response.aclose()
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ProviderError("could not deliver: the destination could not be reached") from exc
    if not 200 <= response.status_code < 300:
        raise ProviderError(f"the destination answered HTTP {response.status_code}")
    return response.status_code
