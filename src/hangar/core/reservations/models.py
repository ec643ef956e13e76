"""Tables of the reservations feature."""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.db import Base


class ReservationLock(Base):
    """One row per team and per host that reservations serialise on (ledger.py says how).

    `holds` only counts how often it was taken: the point of the row is the write that takes it.
    """

    __tablename__ = "reservation_locks"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)  # "team" or "host"
    owner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holds: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
