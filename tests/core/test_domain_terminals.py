"""Terminal sessions and guests: unique aliases, joins on approval, who a key is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.exc import IntegrityError

from hangar.core.db import Database
from hangar.core.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from hangar.core.identity.models import User
from hangar.core.terminals import keys, lifecycle
from hangar.core.terminals.aliases import ALIAS
from hangar.core.terminals.models import GuestState, SessionStatus, TerminalSession
from hangar.core.terminals.service import Reason, Role, TerminalService


def new_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me@laptop"


@pytest.fixture
async def user_id(core_db: Database) -> str:
    async with core_db.session() as session:
        user = User(email=f"{uuid.uuid4().hex}@example.com", name="Owner", password_hash=None)
        session.add(user)
        await session.commit()
        return user.id


async def test_aliases_are_unique_and_clashes_are_retried(
    core_db: Database, team_id: str, user_id: str
) -> None:
    taken = f"brave-otter-{uuid.uuid4().int % 10000:04d}"
    draws: Iterator[str] = iter([taken, taken, taken + "x"])
    async with core_db.session() as session:
        made = TerminalService(session)
        first = await made.create(
            team_id, user_id, machine_id="small", region="local", pub_key=new_key()
        )
        assert ALIAS.fullmatch(first.alias)
        drawn = TerminalService(session, aliases=lambda: next(draws))
        a = await drawn.create(
            team_id, user_id, machine_id="small", region="local", pub_key=new_key()
        )
        # The next two draws clash with it: the first is retried in its savepoint.
        b = await drawn.create(
            team_id, user_id, machine_id="small", region="local", pub_key=new_key()
        )
        assert (a.alias, b.alias) == (taken, taken + "x")
        await session.commit()
        with pytest.raises(InvalidInput):
            await made.create(
                team_id, user_id, machine_id="m", region="Not A Region", pub_key=new_key()
            )
        with pytest.raises(InvalidInput):
            await made.create(
                team_id, user_id, machine_id="m", region="local", pub_key="ssh-rsa nope"
            )
    async with core_db.session() as session:
        session.add(
            TerminalSession(
                team_id=team_id,
                owner_id=user_id,
                alias=taken,
                machine_id="small",
                region="local",
                owner_pub_key="k",
                owner_key_fingerprint="f",
            )
        )
        with pytest.raises(IntegrityError):  # the database itself refuses a second one
            await session.commit()


async def test_guests_join_on_approval(core_db: Database, team_id: str, user_id: str) -> None:
    owner_key, guest_key, other_key = new_key(), new_key(), new_key()
    async with core_db.session() as session:
        terminals = TerminalService(session)
        row = await terminals.create(
            team_id, user_id, machine_id="small", region="local", pub_key=owner_key
        )
        assert await terminals.access(row.alias, owner_key) is None  # not before it runs
        with pytest.raises(NotFound):
            await terminals.by_alias("no-such-0000")
        await terminals.started(row, "capsule-1")
        row = await terminals.get(user_id, row.id)
        assert row.status == SessionStatus.RUNNING
        owner = await terminals.access(row.alias, owner_key)
        assert owner is not None
        assert owner.role == Role.OWNER

        ask = await terminals.request_join(
            row.alias, pub_key=guest_key, user="alice", user_id=user_id, client_ip="192.0.2.1"
        )
        assert ask.state == GuestState.REQUESTED
        assert await terminals.access(row.alias, guest_key) is None  # not before approval
        approved = await terminals.approve(row, ask.joiner_uuid, read_only=True)
        assert approved.state == GuestState.APPROVED
        assert approved.joined_at is not None
        guest = await terminals.access(row.alias, guest_key)
        assert guest is not None
        assert (guest.role, guest.vm_user, guest.read_only) == (
            Role.GUEST,
            "alice",
            True,
        )
        with pytest.raises(IllegalTransition):  # decided already
            await terminals.reject(row, ask.joiner_uuid)

        again = await terminals.request_join(row.alias, pub_key=other_key, user="alice")
        assert (again.state, again.reason) == (GuestState.DENIED, Reason.ALREADY_IN_SESSION)
        bob = await terminals.request_join(row.alias, pub_key=other_key, user="bob")
        bob = await terminals.reject(row, bob.joiner_uuid)
        assert (bob.state, bob.reason) == (GuestState.DENIED, Reason.OWNER_DENIED)
        assert await terminals.access(row.alias, other_key) is None
        with pytest.raises(InvalidInput):
            await terminals.request_join(row.alias, pub_key=other_key, user="root")

        assert [g.vm_user for g in await terminals.guests(row)] == ["alice"]
        joined = await terminals.guest_sessions(user_id)
        assert [g.session_id for g in joined.items] == [row.id]
        await terminals.remove(row, ask.joiner_uuid)
        assert await terminals.access(row.alias, guest_key) is None

        assert await terminals.end(row)
        assert not await terminals.end(await terminals.get(user_id, row.id))
        assert await terminals.access(row.alias, owner_key) is None
        listed = await terminals.list_owned(user_id, [SessionStatus.ENDED])
        assert row.id in [s.id for s in listed.items]
        with pytest.raises(InvalidInput):
            await terminals.list_owned(user_id, ["sleeping"])
        with pytest.raises(Conflict):
            await terminals.started(await terminals.get(user_id, row.id), "capsule-2")
        await session.commit()


def test_session_and_guest_tables() -> None:
    for table, check in (
        (lifecycle.TRANSITIONS, lifecycle.check_transition),
        (lifecycle.GUEST_TRANSITIONS, lifecycle.check_guest_transition),
    ):
        for current, targets in table.items():
            for target in targets:
                check(current, target)
    for current, target in [
        (SessionStatus.ENDED, SessionStatus.RUNNING),
        (SessionStatus.FAILED, SessionStatus.RUNNING),
    ]:
        with pytest.raises(IllegalTransition):
            lifecycle.check_transition(current, target)
    with pytest.raises(IllegalTransition):
        lifecycle.check_guest_transition(GuestState.DENIED, GuestState.APPROVED)
    with pytest.raises(IllegalTransition):
        lifecycle.check_guest_transition(GuestState.REMOVED, GuestState.APPROVED)


def test_keys_are_fingerprinted_as_openssh_does() -> None:
    line = new_key()
    parsed = keys.parse(line)
    assert parsed.openssh == " ".join(line.split()[:2])
    assert parsed.fingerprint.startswith("SHA256:")
    assert keys.parse(parsed.openssh + " other comment") == parsed
    for bad in ("", "ssh-ed25519", "ssh-ed25519 AAAA", "x" * 20000):
        with pytest.raises(InvalidInput):
            keys.parse(bad)
