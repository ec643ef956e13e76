"""JWT signing and verification with Ed25519 keys (joserfc)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey, import_key

from hangar.core.errors import Unauthenticated

ALGORITHM = "Ed25519"
KEY_FILE = "jwt-signing-keys.json"


def generate_key() -> OKPKey:
    """A new Ed25519 signing key with a random key id."""
    return OKPKey.generate_key("Ed25519", parameters={"kid": uuid.uuid4().hex[:16]}, private=True)


def load_or_create_keys(configured: Sequence[str], data_dir: Path) -> list[OKPKey]:
    """The configured keys, else the ones kept in the data directory, made on first start."""
    if configured:
        keys = [import_key(json.loads(raw)) for raw in configured]
        return [k for k in keys if isinstance(k, OKPKey)]
    path = data_dir / KEY_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        return [OKPKey.import_key(k) for k in stored["keys"]]
    key = generate_key()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename so a crash never leaves a half-written key file behind.
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"keys": [key.as_dict(private=True)]}, fh)
    tmp.replace(path)
    return [key]


class TokenSigner:
    """Issues and verifies JWTs for one audience family; the first key signs, all verify."""

    def __init__(self, keys: Sequence[OKPKey], issuer: str) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._signing = keys[0]
        self._verifying = KeySet(list(keys))
        self.issuer = issuer

    def issue(self, audience: str, subject: str, ttl_seconds: int, **claims: Any) -> str:
        """A signed token for `subject`, valid for `ttl_seconds`."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        header = {"alg": ALGORITHM, "kid": self._signing.kid}
        return jwt.encode(header, body, self._signing, algorithms=[ALGORITHM])

    def verify(self, token: str, audience: str) -> Mapping[str, Any]:
        """The claims of a valid, unexpired token for `audience`; Unauthenticated otherwise."""
        try:
            decoded = jwt.decode(token, self._verifying, algorithms=[ALGORITHM])
            registry = jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": audience},
                sub={"essential": True},
                exp={"essential": True},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("invalid or expired token") from exc
        return decoded.claims
