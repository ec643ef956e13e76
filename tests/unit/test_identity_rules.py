"""Validation rules of the identity core."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.core.errors import InvalidInput
from hangar.core.identity import rules
from hangar.core.identity.models import Role


@pytest.mark.parametrize(
    ("given_email", "normalized"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.org ", "bob@example.org"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_normalize_email(given_email: str, normalized: str) -> None:
    assert rules.normalize_email(given_email) == normalized


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@@example.com",
        "a b@example.com",
        "a@localhost",
        "nul\x00@example.com",
        "a@example..com",
    ],
)
def test_normalize_email_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        rules.normalize_email(bad)
    assert exc.value.code == "invalid_email"


def test_email_lookup_key() -> None:
    assert rules.email_lookup_key(" A@B.C ") == "a@b.c"
    assert rules.email_lookup_key("a\x00@b.c") is None
    assert rules.email_lookup_key("a\ud800@b.c") is None


@pytest.mark.parametrize("password", ["12345678", "x" * 1024, "pässwörd"])
def test_password_accepted(password: str) -> None:
    rules.check_password(password)


@pytest.mark.parametrize("password", ["", "1234567", "x" * 1025])
def test_password_rejected(password: str) -> None:
    with pytest.raises(InvalidInput):
        rules.check_password(password)


def test_user_name() -> None:
    assert rules.check_user_name("  Ada  ") == "Ada"
    assert rules.check_user_name("x" * 100) == "x" * 100
    assert rules.check_user_name("Zoë 李") == "Zoë 李"
    for bad in ("", "   ", "x" * 101, "a\x00b", "line\nbreak", "bell\x07"):
        with pytest.raises(InvalidInput):
            rules.check_user_name(bad)


@pytest.mark.parametrize("name", ["a", "Team 42", "under_score", "x" * 128, " leading space"])
def test_team_name_accepted(name: str) -> None:
    assert rules.check_team_name(name) == name


@pytest.mark.parametrize(
    "name", ["", " ", "   ", "x" * 129, "dash-ed", "émoji", "tab\tname", "new\nline", "a\x00"]
)
def test_team_name_rejected(name: str) -> None:
    with pytest.raises(InvalidInput):
        rules.check_team_name(name)


@given(st.text(max_size=300))
def test_personal_team_names_are_always_valid_team_names(user_name: str) -> None:
    rules.check_team_name(rules.personal_team_name(user_name))


def test_personal_team_name() -> None:
    assert rules.personal_team_name("Ada Lovelace") == "Ada Lovelace Team"
    assert rules.personal_team_name("José-María") == "JosMara Team"
    assert rules.personal_team_name("李") == "Personal Team"


def test_slugs() -> None:
    slugs = {rules.new_team_slug() for _ in range(200)}
    assert len(slugs) == 200
    assert all(re.fullmatch(r"[0-9a-f]{6}-[0-9a-f]{6}", s) for s in slugs)


def test_storable() -> None:
    assert rules.storable("anything at all, 李 🚀")
    assert not rules.storable("nul\x00")
    assert not rules.storable("\udfff")


def test_roles_that_manage() -> None:
    assert Role.OWNER.can_manage
    assert Role.ADMIN.can_manage
    assert not Role.MEMBER.can_manage
