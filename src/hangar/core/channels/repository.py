"""Queries of the channels feature."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.channels.models import Channel, Delivery, DeliveryStatus

RETRYING = "retrying"  # pending again after a failed attempt


class DeliveryRepository:
    """Reads delivery rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def failures(self) -> dict[tuple[str, str], int]:
        """(provider, `retrying` or `failed`) -> how many deliveries are in that plight."""
        stmt = (
            select(Channel.provider, Delivery.status, func.count())
            .join(Channel, Channel.id == Delivery.channel_id)
            .where(
                or_(
                    Delivery.status == DeliveryStatus.FAILED,
                    and_(Delivery.status == DeliveryStatus.PENDING, Delivery.attempts > 0),
                )
            )
            .group_by(Channel.provider, Delivery.status)
        )
        found: dict[tuple[str, str], int] = {}
        for provider, status, count in (await self.session.execute(stmt)).all():
            found[(provider, status if status == DeliveryStatus.FAILED else RETRYING)] = count
        return found
