"""A credential carried in the WebSocket subprotocol list, for clients that cannot set headers.

Browsers cannot put headers on a WebSocket handshake, so a client offers a marker followed by
its credential as the next entry:

    Sec-WebSocket-Protocol: hangar.bearer, <Hangar user JWT>
    Sec-WebSocket-Protocol: hangar.api-key, <API key>

JWTs (base64url and dots) and API keys (prefix and hex) are valid subprotocol tokens. The
server accepts the marker as the selected subprotocol (`selected_subprotocol`), never the
credential, so the secret is not echoed back; a client must offer the marker for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import HTTPConnection

from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.web.authn.base import AuthContext
from hangar.web.authn.builtin import api_key_principal, user_jwt_principal

BEARER = "hangar.bearer"
API_KEY = "hangar.api-key"
MARKERS = (BEARER, API_KEY)


def offered(conn: HTTPConnection) -> list[str]:
    """The subprotocols a WebSocket handshake offers (none for plain HTTP)."""
    protocols: Sequence[str] = conn.scope.get("subprotocols") or ()
    return [p.strip() for p in protocols]


def carried(conn: HTTPConnection) -> tuple[str, str] | None:
    """(marker, credential) from the subprotocol list, if a marker is offered."""
    protocols = offered(conn)
    for i, protocol in enumerate(protocols):
        if protocol in MARKERS:
            if i + 1 >= len(protocols) or not protocols[i + 1]:
                raise Unauthenticated(f"subprotocol {protocol} must be followed by a credential")
            return protocol, protocols[i + 1]
    return None


def selected_subprotocol(conn: HTTPConnection) -> str | None:
    """The subprotocol to accept the handshake with: the marker, when one was offered."""
    protocols = offered(conn)
    return next((p for p in protocols if p in MARKERS), None)


class SubprotocolAuthenticator:
    """A user JWT or an API key in `Sec-WebSocket-Protocol` (see the module's docstring)."""

    name = "ws_subprotocol"
    # Unlisted: the "... required" message stays the face's HTTP one.
    challenge: str | None = None

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The carried credential's principal, None without a marker."""
        found = carried(conn)
        if found is None:
            return None
        marker, credential = found
        if marker == API_KEY:
            return await api_key_principal(credential, ctx)
        return await user_jwt_principal(credential, ctx)
