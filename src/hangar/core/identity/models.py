"""Tables of the identity feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base, TimestampedModel


class Role(enum.StrEnum):
    """A member's role in a team; order matters (owner > admin > member)."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def can_manage(self) -> bool:
        """Whether this role may rename the team and manage its members."""
        return self in (Role.OWNER, Role.ADMIN)


class User(TimestampedModel):
    """A person (or service account) who can sign in."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Null for accounts that only sign in through an OAuth provider.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthIdentity(TimestampedModel):
    """A link between a user and an account at an OAuth provider."""

    __tablename__ = "oauth_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))


class Team(TimestampedModel):
    """A group that owns resources. Soft-deleted; its slug stays reserved forever."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(128))
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Membership(Base):
    """A user's role in a team."""

    __tablename__ = "memberships"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
