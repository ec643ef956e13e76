"""Database plumbing: the declarative base, engines, sessions and migrations."""

from hangar.core.db.base import Base, TimestampedModel, UTCDateTime
from hangar.core.db.engine import Database

__all__ = ["Base", "Database", "TimestampedModel", "UTCDateTime"]
