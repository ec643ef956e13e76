"""The Redis server the tests share (127.0.0.1:6379 unless HANGAR_TEST_REDIS_URL says)."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("HANGAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """Its URL, or skip the test when no Redis answers there."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL
