"""The authenticator interface and the chain a face tries its authenticators in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.core.platform import Platform


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What an authenticator may use: the request's session and the shared platform."""

    session: AsyncSession
    platform: Platform


@runtime_checkable
class Authenticator(Protocol):
    """One kind of credential.

    `authenticate` returns None when the request carries no credential of this kind (the
    chain then asks the next one) and raises `Unauthenticated` when it carries one that is
    wrong: a bad credential never falls through to a weaker one.
    """

    name: str
    challenge: str | None
    """How a caller presents it, for the "... required" message; None keeps it unlisted."""

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The principal behind this kind of credential, None if none is presented."""
        ...


class AuthChain:
    """A face's authenticators, tried in order; the first that finds its credential decides."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self.authenticators = tuple(authenticators)
        listed = [a.challenge for a in self.authenticators if a.challenge]
        self.missing = " or ".join(listed) + " required" if listed else "credentials required"

    @property
    def names(self) -> tuple[str, ...]:
        """The names of its authenticators, in order."""
        return tuple(a.name for a in self.authenticators)

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal:
        """The caller's principal, else Unauthenticated."""
        for authenticator in self.authenticators:
            principal = await authenticator.authenticate(conn, ctx)
            if principal is not None:
                return principal
        raise Unauthenticated(self.missing)
