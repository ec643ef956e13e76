"""Notification channels: management, real deliveries in each provider's format, retries."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from hangar.core.channels.providers.webhook import sign
from support.receiver import Receiver
from support.wrenn import Account, Wrenn, error_of

ALL_EVENTS = ["capsule.created", "capsule.destroyed"]


def _config(provider: str, receiver: Receiver, tag: str) -> dict[str, str]:
    base = receiver.url
    return {
        "discord": {"webhook_url": f"{base}/discord/{tag}"},
        "slack": {"webhook_url": f"{base}/slack/{tag}"},
        "teams": {"webhook_url": f"{base}/teams/{tag}"},
        "googlechat": {"webhook_url": f"{base}/googlechat/{tag}"},
        "telegram": {"bot_token": f"123:{tag}", "chat_id": "42"},
        "matrix": {
            "homeserver_url": f"{base}/matrix/{tag}",
            "access_token": f"syt_{tag}",
            "room_id": "!room:example.org",
        },
        "webhook": {"url": f"{base}/webhook/{tag}"},
    }[provider]


def _create(
    capi: httpx.Client, who: Account, provider: str, config: dict[str, str], events: list[str]
) -> dict[str, Any]:
    resp = capi.post(
        "/v1/channels",
        json={
            "name": f"{provider}-{time.monotonic_ns()}",
            "provider": provider,
            "config": config,
            "events": events,
        },
        headers=who.headers,
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_channel_crud_and_secret_shown_once(
    capi: httpx.Client, owner: Account, receiver: Receiver
) -> None:
    made = _create(
        capi, owner, "webhook", _config("webhook", receiver, "crud"), ["capsule.created"]
    )
    assert made["id"].startswith("ch-")
    assert made["team_id"] == owner.team_id
    assert made["secret"].startswith("whsec_")
    got = capi.get(f"/v1/channels/{made['id']}", headers=owner.headers).json()
    assert "secret" not in got
    assert "config" not in got
    assert [c["id"] for c in capi.get("/v1/channels", headers=owner.headers).json()] == [made["id"]]
    updated = capi.patch(
        f"/v1/channels/{made['id']}",
        json={"name": "renamed", "events": ["capsule.paused", "host.down"]},
        headers=owner.headers,
    )
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["events"]) == (
        "renamed",
        ["capsule.paused", "host.down"],
    )
    rotated = capi.put(
        f"/v1/channels/{made['id']}/config",
        json={"config": {"url": f"{receiver.url}/webhook/rotated", "secret": "s3cret-value"}},
        headers=owner.headers,
    )
    assert rotated.status_code == 200
    assert "secret" not in rotated.json()
    stranger = Wrenn(capi).signup(name="Channel Stranger")
    assert capi.get(f"/v1/channels/{made['id']}", headers=stranger.headers).status_code == 404
    assert capi.delete(f"/v1/channels/{made['id']}", headers=owner.headers).status_code == 204
    assert capi.get(f"/v1/channels/{made['id']}", headers=owner.headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"provider": "slack", "config": {}, "events": ["capsule.created"]}, "webhook_url"),
        (
            {"provider": "telegram", "config": {"bot_token": "x"}, "events": ["capsule.created"]},
            "chat_id",
        ),
        (
            {
                "provider": "matrix",
                "config": {"homeserver_url": "ftp://x", "access_token": "t", "room_id": "r"},
                "events": ["host.up"],
            },
            "http",
        ),
        ({"provider": "slack", "config": {"webhook_url": "https://x"}, "events": []}, "events"),
        (
            {"provider": "slack", "config": {"webhook_url": "https://x"}, "events": ["nope"]},
            "events",
        ),
        ({"provider": "carrier-pigeon", "config": {}, "events": ["host.up"]}, "provider"),
    ],
)
def test_channel_validation(
    capi: httpx.Client, owner: Account, body: dict[str, Any], why: str
) -> None:
    resp = capi.post("/v1/channels", json={"name": "bad", **body}, headers=owner.headers)
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["code"] == "invalid_request"
    assert why in error_of(resp)["message"]


def test_channels_need_a_user_token(capi: httpx.Client, owner: Account) -> None:
    key = Wrenn(capi).create_key(owner)["key"]
    assert capi.get("/v1/channels", headers={"X-API-Key": key}).status_code == 401
    assert capi.get("/v1/channels").status_code == 401


def test_test_endpoint_sends_for_real(
    capi: httpx.Client, owner: Account, receiver: Receiver
) -> None:
    ok = capi.post(
        "/v1/channels/test",
        json={"provider": "slack", "config": {"webhook_url": f"{receiver.url}/slack/probe"}},
        headers=owner.headers,
    )
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok"}
    assert "Test notification" in receiver.wait_for("/slack/probe", 1)[0].json()["text"]
    receiver.fail("/slack/down", 1)
    refused = capi.post(
        "/v1/channels/test",
        json={"provider": "slack", "config": {"webhook_url": f"{receiver.url}/slack/down"}},
        headers=owner.headers,
    )
    assert refused.status_code == 400
    assert "HTTP 500" in error_of(refused)["message"]


def test_capsule_created_reaches_every_subscribed_channel_once(
    capi: httpx.Client, owner: Account, receiver: Receiver
) -> None:
    tag = f"t{time.monotonic_ns()}"
    secrets: dict[str, str] = {}
    for provider in ("discord", "slack", "teams", "googlechat", "telegram", "matrix", "webhook"):
        made = _create(capi, owner, provider, _config(provider, receiver, tag), ALL_EVENTS)
        if provider == "webhook":
            secrets["webhook"] = made["secret"]
    _create(
        capi,
        owner,
        "slack",
        {"webhook_url": f"{receiver.url}/unsubscribed/{tag}"},
        ["capsule.paused"],
    )
    capsule = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    try:
        discord = receiver.wait_for(f"/discord/{tag}", 1)[0].json()
        assert discord["content"] == "**Capsule created**"
        assert discord["embeds"][0]["title"] == "capsule.created"
        slack = receiver.wait_for(f"/slack/{tag}", 1)[0].json()
        assert slack["text"].startswith("Capsule created")
        assert slack["blocks"][0]["type"] == "section"
        teams = receiver.wait_for(f"/teams/{tag}", 1)[0].json()
        assert teams["@type"] == "MessageCard"
        assert teams["title"] == "Capsule created"
        chat = receiver.wait_for(f"/googlechat/{tag}", 1)[0].json()
        assert chat["text"].startswith("*Capsule created*")
        telegram = receiver.wait_for(f"/telegram/bot123:{tag}/sendMessage", 1)[0]
        assert telegram.json()["chat_id"] == "42"
        matrix = receiver.wait_for(f"/matrix/{tag}/_matrix/client/v3/rooms/", 1)[0]
        assert matrix.method == "PUT"
        assert matrix.headers["authorization"] == f"Bearer syt_{tag}"
        assert matrix.json()["msgtype"] == "m.text"
        hook = receiver.wait_for(f"/webhook/{tag}", 1)[0]
        timestamp = hook.headers["x-hangar-timestamp"]
        assert hook.headers["x-hangar-signature"] == sign(secrets["webhook"], timestamp, hook.body)
        assert hook.headers["x-hangar-delivery"] == hook.json()["id"]
        assert hook.json()["type"] == "capsule.created"
        time.sleep(1.0)  # anything extra would have arrived by now
        for prefix in ("/discord/", "/slack/", "/teams/", "/googlechat/", "/webhook/"):
            assert len(receiver.at(f"{prefix}{tag}")) == 1, prefix
        assert receiver.at(f"/unsubscribed/{tag}") == []
    finally:
        capi.delete(f"/v1/capsules/{capsule['id']}", headers=owner.headers)
    destroyed = receiver.wait_for(f"/webhook/{tag}", 2)[1].json()
    assert destroyed["type"] == "capsule.destroyed"


def test_receiver_failing_twice_gets_the_event_once_it_recovers(
    capi: httpx.Client, owner: Account, receiver: Receiver
) -> None:
    tag = f"flaky{time.monotonic_ns()}"
    receiver.fail(f"/webhook/{tag}", 2)
    _create(capi, owner, "webhook", _config("webhook", receiver, tag), ["capsule.created"])
    capsule = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers).json()
    try:
        attempts = receiver.wait_for(f"/webhook/{tag}", 3, timeout=30)
        ids = {a.headers["x-hangar-delivery"] for a in attempts}
        assert len(ids) == 1  # the same event, retried
        time.sleep(1.5)
        assert len(receiver.at(f"/webhook/{tag}")) == 3  # delivered once it recovered, then quiet
    finally:
        capi.delete(f"/v1/capsules/{capsule['id']}", headers=owner.headers)
