"""Validation rules for identity data, shared by every face."""

from __future__ import annotations

import re
import secrets
import unicodedata

from email_validator import EmailNotValidError, validate_email

from hangar.core.errors import InvalidInput

TEAM_NAME = re.compile(r"^[A-Za-z0-9 _]{1,128}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_USER_NAME_LENGTH = 100


def storable(text: str) -> bool:
    """Whether text can be stored and looked up on every backend (PostgreSQL refuses NUL, and
    lone surrogates cannot be encoded)."""
    return "\x00" not in text and not any(unicodedata.category(c) == "Cs" for c in text)


def email_lookup_key(email: str) -> str | None:
    """The key an existing account's email is found by, or None when no account can match."""
    key = email.strip().lower()
    return key if storable(key) else None


def normalize_email(email: str) -> str:
    """A syntactically valid email, lower-cased so lookups are case-insensitive."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email: {exc}", code="invalid_email") from exc
    return result.normalized.lower()


def check_password(password: str) -> None:
    """Passwords are at least 8 characters (and bounded, so hashing stays cheap)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", code="weak_password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("password is too long", code="invalid_password")


def check_user_name(name: str) -> str:
    """A display name: 1-100 characters once trimmed, no control characters."""
    cleaned = name.strip()
    control = any(unicodedata.category(c) in ("Cc", "Cs") for c in cleaned)
    if not cleaned or len(cleaned) > MAX_USER_NAME_LENGTH or control:
        raise InvalidInput(f"name must be 1-{MAX_USER_NAME_LENGTH} characters", code="invalid_name")
    return cleaned


def check_team_name(name: str) -> str:
    """Team names are 1-128 characters of A-Z a-z 0-9, space and underscore."""
    if not TEAM_NAME.fullmatch(name) or not name.strip():
        raise InvalidInput(
            "team name must be 1-128 characters: letters, digits, spaces and underscores",
            code="invalid_team_name",
        )
    return name


def personal_team_name(user_name: str) -> str:
    """A valid team name derived from a person's name, for the team made at signup."""
    cleaned = "".join(c for c in user_name if c.isascii() and (c.isalnum() or c in " _"))
    cleaned = " ".join(cleaned.split())[:121].strip()
    return f"{cleaned} Team" if cleaned else "Personal Team"


def new_team_slug() -> str:
    """A 12-hex-digit slug shaped like `a1b2c3-d1e2f3`."""
    return f"{secrets.token_hex(3)}-{secrets.token_hex(3)}"
