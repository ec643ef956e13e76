"""`/v1/users/search`: email-prefix lookup for the add-member UI."""

from __future__ import annotations

from fastapi import APIRouter, Query

from hangar.faces.wrenn import render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import UserDep, UsersDep

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/search", response_model=list[w.UserSearchResult])
async def search_users(
    principal: UserDep, users: UsersDep, email: str = Query(...)
) -> list[w.UserSearchResult]:
    """Up to 10 users whose email starts with the prefix (which must contain '@')."""
    return [render.user_hit(u) for u in await users.search(email)]
