"""Conformance of every channel operation to `wrenn-openapi.yaml` (user JWT, real providers).

Path ids are steered to the user's real channels most of the time; `testChannel` and
`rotateChannelConfig` are often pointed at the local receiver so they really send. getChannel,
updateChannel and rotateChannelConfig document 404; deleteChannel is 204 whatever the id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis

from support.live import LiveServer
from support.receiver import Receiver
from support.spec import check_steered, load_wrenn_schema
from support.wrenn import Account, Wrenn

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    return load_wrenn_schema()


@dataclass
class World:
    http: httpx.Client
    owner: Account
    receiver: Receiver
    session: requests.Session = field(default_factory=requests.Session)

    def channel(self) -> str:
        resp = self.http.post(
            "/v1/channels",
            json={
                "name": f"spec-{uuid.uuid4().hex[:8]}",
                "provider": "slack",
                "config": {"webhook_url": f"{self.receiver.url}/slack/spec"},
                "events": ["capsule.created"],
            },
            headers=self.owner.headers,
        )
        assert resp.status_code == 201, resp.text
        channel_id: str = resp.json()["id"]
        return channel_id


@pytest.fixture(scope="module")
def world(capsule_server: LiveServer, receiver: Receiver) -> Iterator[World]:
    with httpx.Client(base_url=capsule_server.wrenn_url, timeout=60) as http:
        w = World(http, Wrenn(http).signup(name="Spec Channels"), receiver)
        yield w
        w.session.close()


Prepare = Callable[[World, Any, str], None]


def _id(w: World, case: Any, choice: str) -> None:
    if choice in ("a", "b"):
        case.path_parameters["id"] = w.channel()


def _receiver_config(w: World, case: Any, choice: str) -> None:
    if choice == "a" and isinstance(case.body, dict):
        case.body["provider"] = "webhook" if "provider" in case.body else None
        case.body["config"] = {"url": f"{w.receiver.url}/webhook/spec-{time.monotonic_ns()}"}
        if case.body["provider"] is None:
            del case.body["provider"]


def _rotate(w: World, case: Any, choice: str) -> None:
    _id(w, case, choice)
    if choice == "a" and isinstance(case.body, dict):
        case.body["config"] = {"webhook_url": f"{w.receiver.url}/slack/rotated"}


def _nothing(w: World, case: Any, choice: str) -> None:
    return None


PREPARE: dict[str, Prepare] = {
    "createChannel": _receiver_config,
    "listChannels": _nothing,
    "testChannel": _receiver_config,
    "getChannel": _id,
    "updateChannel": _id,
    "deleteChannel": _id,
    "rotateChannelConfig": _rotate,
}


@pytest.mark.parametrize("operation_id", list(PREPARE))
def test_channel_operation_conforms_to_the_wrenn_spec(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    check_steered(
        schema,
        world,
        operation_id,
        PREPARE[operation_id],
        headers=world.owner.headers,
        max_examples=MAX_EXAMPLES,
    )
