"""`/v1/channels`: notification channels (user JWT only, as the spec says)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from hangar.core.channels.models import Channel
from hangar.core.channels.service import ChannelService
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import UserDep
from hangar.web.deps import PlatformDep, SessionDep

router = APIRouter(prefix="/v1/channels", tags=["channels"])


async def get_channels(platform: PlatformDep, session: SessionDep) -> ChannelService:
    """Channel service for this request."""
    return ChannelService(session, platform.sealer, platform.channel_providers, platform.http)


ChannelsDep = Annotated[ChannelService, Depends(get_channels)]


def _render(channel: Channel, secret: str | None = None) -> w.ChannelResponse:
    return w.ChannelResponse(
        id=ids.encode(ids.CHANNEL, channel.id),
        team_id=ids.encode(ids.TEAM, channel.team_id),
        name=channel.name,
        provider=channel.provider,
        events=list(channel.events),
        created_at=channel.created_at,
        updated_at=channel.updated_at,
        secret=secret,
    )


@router.post(
    "", status_code=201, response_model=w.ChannelResponse, response_model_exclude_none=True
)
async def create_channel(
    body: w.CreateChannelRequest, principal: UserDep, channels: ChannelsDep, session: SessionDep
) -> w.ChannelResponse:
    """Create a channel; a webhook's secret is in this response and never again."""
    saved = await channels.create(
        principal.require_team(), body.name, body.provider, body.config, body.events
    )
    return _render(saved.channel, saved.secret)


@router.get("", response_model=list[w.ChannelResponse], response_model_exclude_none=True)
async def list_channels(principal: UserDep, channels: ChannelsDep) -> list[w.ChannelResponse]:
    """The team's channels."""
    return [_render(c) for c in await channels.list_for_team(principal.require_team())]


@router.post("/test", response_model=w.TestChannelResponse)
async def test_channel(
    body: w.TestChannelRequest, principal: UserDep, channels: ChannelsDep
) -> w.TestChannelResponse:
    """Send a real test notification with this config, saving nothing."""
    await channels.test(principal.require_team(), body.provider, body.config)
    return w.TestChannelResponse(status="ok")


@router.get("/{id}", response_model=w.ChannelResponse, response_model_exclude_none=True)
async def get_channel(id: str, principal: UserDep, channels: ChannelsDep) -> w.ChannelResponse:
    """One channel."""
    return _render(await channels.get(principal.require_team(), ids.decode(ids.CHANNEL, id)))


@router.patch("/{id}", response_model=w.ChannelResponse, response_model_exclude_none=True)
async def update_channel(
    id: str,
    body: w.UpdateChannelRequest,
    principal: UserDep,
    channels: ChannelsDep,
    session: SessionDep,
) -> w.ChannelResponse:
    """Rename a channel and change its events."""
    channel = await channels.update(
        principal.require_team(), ids.decode(ids.CHANNEL, id), body.name, body.events
    )
    return _render(channel)


@router.delete("/{id}", status_code=204)
async def delete_channel(
    id: str, principal: UserDep, channels: ChannelsDep, session: SessionDep
) -> Response:
    """Delete a channel; 204 also when there is nothing to delete."""
    await channels.delete(principal.require_team(), ids.decode(ids.CHANNEL, id))
    return Response(status_code=204)


@router.put("/{id}/config", response_model=w.ChannelResponse, response_model_exclude_none=True)
async def rotate_channel_config(
    id: str,
    body: w.RotateConfigRequest,
    principal: UserDep,
    channels: ChannelsDep,
    session: SessionDep,
) -> w.ChannelResponse:
    """Replace the provider config (secrets) entirely."""
    saved = await channels.rotate(
        principal.require_team(), ids.decode(ids.CHANNEL, id), body.config
    )
    return _render(saved.channel, saved.secret)
