"""WebSocket addresses for tests."""

from __future__ import annotations

import httpx


def ws_url(client: httpx.Client, path: str) -> str:
    """The ws:// (or wss://) URL of `path` under the client's base URL."""
    return str(client.base_url).replace("http", "ws", 1).rstrip("/") + path
