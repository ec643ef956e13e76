"""Terminal sessions and their guests. Services never commit; the caller does."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.errors import Conflict, InvalidInput, NotFound
from hangar.core.hosts import rules as host_rules
from hangar.core.pagination import Page, PageRequest
from hangar.core.terminals import keys
from hangar.core.terminals.aliases import new_alias
from hangar.core.terminals.models import (
    GuestState,
    SessionStatus,
    TerminalGuest,
    TerminalSession,
)
from hangar.core.terminals.repository import TerminalRepository

ALIAS_ATTEMPTS = 8  # a clash is one in millions; eight in a row means something else is wrong
# A Linux user name the sandbox's useradd accepts, and no system account.
VM_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "nobody", "user"})


class Reason(enum.StrEnum):
    """Why a join was denied, as Warpdrive's `join_request_outcome` names it."""

    ALREADY_IN_SESSION = "user_already_in_session"
    OWNER_DENIED = "owner_denied_join"


class Role(enum.StrEnum):
    """Who an SSH key is in a session."""

    OWNER = "owner"
    GUEST = "guest"


@dataclass(frozen=True)
class Access:
    """What a key may do in a session: its role, VM user and whether input is dropped."""

    session: TerminalSession
    role: Role
    vm_user: str | None
    read_only: bool


def vm_user(value: str) -> str:
    """A VM user name a guest may be created as, else InvalidInput."""
    if not VM_USER.fullmatch(value) or value in RESERVED_USERS:
        raise InvalidInput("user must be a Linux user name (a-z, 0-9, _ and -), not a system one")
    return value


class TerminalService:
    """Sessions, the join requests of guests, and who a key is in a session."""

    def __init__(self, session: AsyncSession, aliases: Callable[[], str] = new_alias) -> None:
        self.session = session
        self.repo = TerminalRepository(session)
        self.aliases = aliases

    async def create(
        self,
        team_id: str,
        owner_id: str,
        *,
        machine_id: str,
        region: str,
        pub_key: str,
        image_id: str | None = None,
        no_join: bool = False,
    ) -> TerminalSession:
        """A new `starting` session with a unique alias (its machine is the caller's to start)."""
        key = keys.parse(pub_key)
        for _ in range(ALIAS_ATTEMPTS):
            row = TerminalSession(
                team_id=team_id,
                owner_id=owner_id,
                alias=self.aliases(),
                machine_id=machine_id,
                image_id=image_id,
                region=host_rules.region(region),
                no_join=no_join,
                owner_pub_key=key.openssh,
                owner_key_fingerprint=key.fingerprint,
            )
            try:
                # A savepoint: a clash (a concurrent create drew the same alias) costs a retry,
                # not the caller's transaction. The unique index is the arbiter.
                async with self.session.begin_nested():
                    await self.repo.add(row)
                return row
            except IntegrityError:
                continue
        raise Conflict("no free alias found; try again")

    async def get(self, owner_id: str, session_id: str) -> TerminalSession:
        """An owner's session, else NotFound."""
        row = await self.repo.get(session_id)
        if row is None or row.owner_id != owner_id:
            raise NotFound("session not found")
        return row

    async def by_alias(self, alias: str) -> TerminalSession:
        """A live session by alias, else NotFound."""
        row = await self.repo.by_alias(alias)
        if row is None or row.status not in (SessionStatus.STARTING, SessionStatus.RUNNING):
            raise NotFound("session not found")
        return row

    async def list_owned(
        self, owner_id: str, statuses: Sequence[str] | None = None, page: PageRequest | None = None
    ) -> Page[TerminalSession]:
        """An owner's sessions, newest first."""
        for status in statuses or ():
            if status not in SessionStatus.__members__.values():
                raise InvalidInput(f"unknown status {status[:32]!r}")
        return await self.repo.owned(owner_id, statuses, page or PageRequest())

    async def started(self, row: TerminalSession, capsule_id: str) -> None:
        """Its machine runs: `running`, on that capsule."""
        if not await self.repo.move(
            row.id, SessionStatus.STARTING, SessionStatus.RUNNING, capsule_id=capsule_id
        ):
            raise Conflict("session is no longer starting")

    async def failed(self, row: TerminalSession, reason: str) -> None:
        """Its machine could not be started."""
        await self.repo.move(
            row.id,
            SessionStatus.STARTING,
            SessionStatus.FAILED,
            status_reason=reason[:500],
            ended_at=utcnow(),
        )

    async def end(self, row: TerminalSession) -> bool:
        """End a live session and remove its guests; False when it had already ended."""
        if row.status in (SessionStatus.ENDED, SessionStatus.FAILED):
            return False  # ending twice is no error: the first one did it
        now = utcnow()
        moved = await self.repo.move(row.id, row.status, SessionStatus.ENDED, ended_at=now)
        if moved:
            for guest in await self.repo.guests(
                row.id, [GuestState.REQUESTED, GuestState.APPROVED]
            ):
                await self.repo.move_guest(
                    guest.id, guest.state, GuestState.REMOVED, decided_at=now
                )
        return moved

    async def request_join(
        self,
        alias: str,
        *,
        pub_key: str,
        user: str,
        user_id: str | None = None,
        client_ip: str | None = None,
        region: str | None = None,
    ) -> TerminalGuest:
        """A guest's request: `requested`, or `denied` at once when already in the session."""
        row = await self.by_alias(alias)
        key = keys.parse(pub_key)
        guest = TerminalGuest(
            session_id=row.id,
            joiner_uuid=str(uuid.uuid4()),
            user_id=user_id,
            vm_user=vm_user(user),
            pub_key=key.openssh,
            key_fingerprint=key.fingerprint,
            client_ip=client_ip[:64] if client_ip else None,
            region=region[:64] if region else None,
        )
        if await self._in_session(row, guest.vm_user, key.fingerprint):
            guest.state, guest.reason = GuestState.DENIED, Reason.ALREADY_IN_SESSION
            guest.decided_at = utcnow()
        await self.repo.add(guest)
        return guest

    async def _in_session(self, row: TerminalSession, user: str, fingerprint: str) -> bool:
        if fingerprint == row.owner_key_fingerprint:
            return True
        approved = await self.repo.guests(row.id, [GuestState.APPROVED])
        return any(g.vm_user == user or g.key_fingerprint == fingerprint for g in approved)

    async def _pending(self, row: TerminalSession, joiner_uuid: str) -> TerminalGuest:
        guest = await self.repo.guest(joiner_uuid)
        if guest is None or guest.session_id != row.id:
            raise NotFound("join request not found")
        return guest

    async def approve(
        self, row: TerminalSession, joiner_uuid: str, *, read_only: bool = False
    ) -> TerminalGuest:
        """Let a requesting guest in (its VM user is the caller's to create in the machine)."""
        guest = await self._pending(row, joiner_uuid)
        now = utcnow()
        values: dict[str, object]
        if await self._in_session(row, guest.vm_user, guest.key_fingerprint):
            target, values = GuestState.DENIED, {"reason": Reason.ALREADY_IN_SESSION}
        else:
            target, values = GuestState.APPROVED, {"read_only": read_only, "joined_at": now}
        if not await self.repo.move_guest(guest.id, guest.state, target, decided_at=now, **values):
            raise Conflict("the request was decided meanwhile")
        return await self._pending(row, joiner_uuid)

    async def reject(self, row: TerminalSession, joiner_uuid: str) -> TerminalGuest:
        """Refuse a requesting guest."""
        guest = await self._pending(row, joiner_uuid)
        if not await self.repo.move_guest(
            guest.id,
            guest.state,
            GuestState.DENIED,
            decided_at=utcnow(),
            reason=Reason.OWNER_DENIED,
        ):
            raise Conflict("the request was decided meanwhile")
        return await self._pending(row, joiner_uuid)

    async def remove(self, row: TerminalSession, joiner_uuid: str) -> TerminalGuest:
        """Take a guest out of the session (the caller closes its connections)."""
        guest = await self._pending(row, joiner_uuid)
        if not await self.repo.move_guest(
            guest.id, guest.state, GuestState.REMOVED, decided_at=utcnow()
        ):
            raise Conflict("the guest's state changed meanwhile")
        return await self._pending(row, joiner_uuid)

    async def guests(self, row: TerminalSession) -> list[TerminalGuest]:
        """Approved guests of a session."""
        return await self.repo.guests(row.id, [GuestState.APPROVED])

    async def guest_sessions(
        self, user_id: str, page: PageRequest | None = None
    ) -> Page[TerminalGuest]:
        """Where a user is an approved guest, newest first."""
        return await self.repo.joined(user_id, page or PageRequest())

    async def access(self, alias: str, pub_key: str) -> Access | None:
        """Who the key is in the live session `alias`, or None (refused alike: nothing leaks)."""
        row = await self.repo.by_alias(alias)
        if row is None or row.status != SessionStatus.RUNNING:
            return None
        try:
            fingerprint = keys.parse(pub_key).fingerprint
        except InvalidInput:
            return None
        if fingerprint == row.owner_key_fingerprint:
            return Access(row, Role.OWNER, None, False)
        for guest in await self.repo.guests(row.id, [GuestState.APPROVED]):
            if guest.key_fingerprint == fingerprint:
                return Access(row, Role.GUEST, guest.vm_user, guest.read_only)
        return None
