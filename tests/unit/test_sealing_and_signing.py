"""Channel secrets sealed at rest, and webhook signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from hangar.core.channels.providers.webhook import new_secret, sign
from hangar.core.security.sealing import (
    KEY_FILE,
    Sealer,
    SealingError,
    load_or_create_sealing_keys,
)


def test_sealed_values_open_only_with_their_key_and_context(tmp_path: Path) -> None:
    [key] = load_or_create_sealing_keys([], tmp_path)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert load_or_create_sealing_keys([], tmp_path) == [key]  # kept, not regenerated
    sealer = Sealer([key])
    token = sealer.seal(b'{"secret":"s"}', context=b"channel-1")
    assert b"secret" not in base64.b64decode(token)
    assert sealer.open(token, context=b"channel-1") == b'{"secret":"s"}'
    with pytest.raises(SealingError):
        sealer.open(token, context=b"channel-2")  # a row's secret cannot be moved to another
    with pytest.raises(SealingError):
        Sealer([os.urandom(32)]).open(token, context=b"channel-1")


def test_keys_rotate_first_seals_all_open() -> None:
    old, new = os.urandom(32), os.urandom(32)
    sealed_with_old = Sealer([old]).seal(b"x", context=b"c")
    rotated = Sealer([new, old])
    assert rotated.open(sealed_with_old, context=b"c") == b"x"
    assert Sealer([new]).open(rotated.seal(b"y", context=b"c"), context=b"c") == b"y"
    configured = [base64.b64encode(new).decode()]
    assert load_or_create_sealing_keys(configured, Path("/nonexistent")) == [new]
    with pytest.raises(ValueError, match="32 bytes"):
        load_or_create_sealing_keys([base64.b64encode(b"short").decode()], Path("/nonexistent"))


def test_webhook_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = b'{"type":"capsule.created"}'
    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(secret, "1700000000", body) == f"sha256={expected}"
    assert sign(secret, "1700000001", body) != sign(secret, "1700000000", body)
