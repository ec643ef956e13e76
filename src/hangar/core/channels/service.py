"""Channel management, tests and fan-out. Services never commit; the caller does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.channels.models import Channel, Delivery
from hangar.core.channels.providers.base import Notification, Provider, ProviderError
from hangar.core.channels.registry import EVENT_TYPES, TEST_EVENT
from hangar.core.clock import utcnow
from hangar.core.errors import InvalidInput, NotFound
from hangar.core.events.envelope import Event
from hangar.core.ids import new_id
from hangar.core.security.sealing import Sealer


@dataclass(frozen=True)
class Saved:
    """A channel, and its webhook secret when it was just made (shown once)."""

    channel: Channel
    secret: str | None = None


def check_name(name: str) -> str:
    """1-128 printable characters."""
    name = name.strip()
    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise InvalidInput("name must be 1-128 printable characters")
    return name


def check_events(events: Sequence[str]) -> list[str]:
    """A non-empty list of known event types, without repeats."""
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        raise InvalidInput(f"events must be a non-empty list of: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(events))


class ChannelService:
    """What a team does with its notification channels."""

    def __init__(
        self,
        session: AsyncSession,
        sealer: Sealer,
        providers: dict[str, Provider],
        http: httpx.AsyncClient,
    ) -> None:
        self.session = session
        self.sealer = sealer
        self.providers = providers
        self.http = http

    def _provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise InvalidInput(f"provider must be one of: {', '.join(self.providers)}")
        return provider

    def _config(self, provider: Provider, config: dict[str, str]) -> dict[str, str]:
        try:
            return provider.normalise(config)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    def _seal(self, channel_id: str, config: dict[str, str]) -> str:
        return self.sealer.seal(json.dumps(config).encode(), context=channel_id.encode())

    def config_of(self, channel: Channel) -> dict[str, str]:
        """The channel's provider config, unsealed (never rendered to clients)."""
        opened = self.sealer.open(channel.sealed_config, context=channel.id.encode())
        config: dict[str, str] = json.loads(opened)
        return config

    async def _name_free(self, team_id: str, name: str, but: str | None = None) -> None:
        found = (
            await self.session.execute(
                select(Channel.id).where(Channel.team_id == team_id, Channel.name == name)
            )
        ).scalar_one_or_none()
        if found is not None and found != but:
            # 400, not 409: the contract documents only 400 for a refused channel body.
            raise InvalidInput(f"a channel named {name!r} already exists in this team")

    async def create(
        self, team_id: str, name: str, provider: str, config: dict[str, str], events: list[str]
    ) -> Saved:
        """Validate, seal the config and store the channel."""
        chosen = self._provider(provider)
        name, events = check_name(name), check_events(events)
        clean = self._config(chosen, config)
        await self._name_free(team_id, name)
        channel_id = new_id()
        channel = Channel(
            id=channel_id,
            team_id=team_id,
            name=name,
            provider=chosen.name,
            events=events,
            sealed_config=self._seal(channel_id, clean),
        )
        self.session.add(channel)
        await self.session.flush()
        return Saved(channel, clean.get("secret") if chosen.name == "webhook" else None)

    async def list_for_team(self, team_id: str) -> list[Channel]:
        """The team's channels, oldest first."""
        result = await self.session.execute(
            select(Channel).where(Channel.team_id == team_id).order_by(Channel.created_at)
        )
        return list(result.scalars().all())

    async def get(self, team_id: str, channel_id: str) -> Channel:
        """One of the team's channels."""
        channel = await self.session.get(Channel, channel_id) if channel_id else None
        if channel is None or channel.team_id != team_id:
            raise NotFound("channel not found")
        return channel

    async def update(self, team_id: str, channel_id: str, name: str, events: list[str]) -> Channel:
        """Rename and resubscribe."""
        channel = await self.get(team_id, channel_id)
        name, events = check_name(name), check_events(events)
        await self._name_free(team_id, name, but=channel.id)
        channel.name, channel.events, channel.updated_at = name, events, utcnow()
        await self.session.flush()
        return channel

    async def rotate(self, team_id: str, channel_id: str, config: dict[str, str]) -> Saved:
        """Replace the provider config entirely; a generated webhook secret is shown once."""
        channel = await self.get(team_id, channel_id)
        clean = self._config(self._provider(channel.provider), config)
        channel.sealed_config = self._seal(channel.id, clean)
        channel.updated_at = utcnow()
        await self.session.flush()
        generated = channel.provider == "webhook" and not str(config.get("secret") or "").strip()
        return Saved(channel, clean["secret"] if generated else None)

    async def delete(self, team_id: str, channel_id: str) -> None:
        """Delete a channel and its delivery log; idempotent for the team's own ids."""
        channel = await self.session.get(Channel, channel_id) if channel_id else None
        if channel is not None and channel.team_id == team_id:
            await self.session.delete(channel)
            await self.session.flush()

    async def test(self, team_id: str, provider: str, config: dict[str, str]) -> None:
        """Send a real test notification now; the provider's refusal becomes a 400."""
        chosen = self._provider(provider)
        clean = self._config(chosen, config)
        note = Notification(
            event_id=new_id(),
            event_type=TEST_EVENT,
            title="Test notification",
            text="Hangar can reach this channel.",
            event={"type": TEST_EVENT, "team_id": team_id, "payload": {}},
        )
        try:
            await chosen.send(self.http, clean, note)
        except ProviderError as exc:
            raise InvalidInput(f"{chosen.name}: {exc}") from exc


async def enqueue_deliveries(session: AsyncSession, events: list[Event]) -> None:
    """One pending delivery per subscribed channel per event, in the relay's transaction."""
    teams = {e.team_id for e in events if e.team_id}
    if not teams:
        return
    channels = (
        (await session.execute(select(Channel).where(Channel.team_id.in_(teams)))).scalars().all()
    )
    for event in events:
        for channel in channels:
            if channel.team_id == event.team_id and event.type in channel.events:
                session.add(
                    Delivery(
                        channel_id=channel.id,
                        event_id=event.id,
                        event_type=event.type,
                        event=event.to_dict(),
                    )
                )
