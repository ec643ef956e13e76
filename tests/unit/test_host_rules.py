"""Host rules: who may create, see and manage hosts, and what hosts may report."""

from __future__ import annotations

import pytest

from hangar.core.errors import InvalidInput
from hangar.core.hosts import rules
from hangar.core.hosts.models import Host, HostType
from hangar.core.identity.models import Role
from hangar.core.identity.principal import CredentialKind, Principal


def _who(*, admin: bool = False, team: str | None = "t1") -> Principal:
    return Principal(CredentialKind.USER_TOKEN, team, "u1", is_platform_admin=admin)


def _host(kind: HostType, team: str | None) -> Host:
    return Host(type=kind, team_id=team)


@pytest.mark.parametrize(
    ("admin", "kind", "role", "allowed"),
    [
        (True, HostType.REGULAR, None, True),
        (False, HostType.REGULAR, Role.OWNER, False),
        (True, HostType.BYOC, None, True),
        (False, HostType.BYOC, Role.OWNER, True),
        (False, HostType.BYOC, Role.ADMIN, False),
        (False, HostType.BYOC, Role.MEMBER, False),
        (False, HostType.BYOC, None, False),
    ],
)
def test_may_create(admin: bool, kind: HostType, role: Role | None, allowed: bool) -> None:
    assert rules.may_create(_who(admin=admin), kind, role) is allowed


def test_visibility_and_management() -> None:
    byoc, regular, other = (
        _host(HostType.BYOC, "t1"),
        _host(HostType.REGULAR, None),
        _host(HostType.BYOC, "t2"),
    )
    assert rules.visible(_who(), byoc)
    assert not rules.visible(_who(), regular)
    assert not rules.visible(_who(), other)
    assert all(rules.visible(_who(admin=True), h) for h in (byoc, regular, other))
    assert rules.may_delete(_who(), byoc, Role.ADMIN)
    assert not rules.may_delete(_who(), byoc, Role.MEMBER)
    assert not rules.may_delete(_who(), regular, Role.OWNER)
    assert rules.may_delete(_who(admin=True), regular, None)


@pytest.mark.parametrize("tag", ["gpu", "zone=eu-west", "a" * 64, "v1.2:x"])
def test_good_tags(tag: str) -> None:
    assert rules.tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "a" * 65, "has space", "-lead", "a/b", "nul\x00"])
def test_bad_tags(tag: str) -> None:
    with pytest.raises(InvalidInput):
        rules.tag(tag)


def test_reported_specs_are_bounded() -> None:
    assert rules.address(" 10.0.0.5:7000 ") == "10.0.0.5:7000"
    for bad in ("", "a b", "x" * 256, "nul\x00"):
        with pytest.raises(InvalidInput):
            rules.address(bad)
    assert rules.count("cpu_cores", None, 8) is None
    with pytest.raises(InvalidInput):
        rules.count("cpu_cores", -1, 8)
    assert rules.label("provider", "  ", 64) is None
    with pytest.raises(InvalidInput):
        rules.label("provider", "x" * 65)
