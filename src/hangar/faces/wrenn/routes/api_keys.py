"""`/v1/api-keys`: team API keys."""

from __future__ import annotations

from fastapi import APIRouter, Body, Response

from hangar.faces.wrenn import ids, render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import ApiKeysDep, UserDep
from hangar.web.deps import SessionDep

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=201, response_model=w.APIKeyResponse, response_model_exclude_none=True)
async def create_api_key(
    principal: UserDep,
    keys: ApiKeysDep,
    session: SessionDep,
    body: w.CreateAPIKeyRequest | None = Body(default=None),
) -> w.APIKeyResponse:
    """Create a key; its plaintext is in this response and never again."""
    issued = await keys.create(principal, body.name if body else None)
    return render.api_key(issued.key, issued.plaintext)


@router.get("", response_model=list[w.APIKeyResponse], response_model_exclude_none=True)
async def list_api_keys(principal: UserDep, keys: ApiKeysDep) -> list[w.APIKeyResponse]:
    """The team's keys, newest first, without plaintext."""
    return [render.api_key(k) for k in await keys.list(principal)]


@router.delete("/{id}", status_code=204)
async def delete_api_key(
    id: str,
    principal: UserDep,
    keys: ApiKeysDep,
    session: SessionDep,
) -> Response:
    """Revoke a key at once. Idempotent: 204 even when there was nothing to delete."""
    await keys.revoke(principal, ids.decode(ids.KEY, id))
    return Response(status_code=204)
