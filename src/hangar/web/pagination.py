"""`limit`/`offset` query parameters into a core `PageRequest`, and the page's headers.

Wrenn and FastVM document no pagination on their lists: there these are optional extras, the
body stays the documented bare list, and the total travels in `X-Total-Count`. A face whose
contract has its own wire form (a cursor, a wrapped body) maps it onto the same core types.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Response

from hangar.core.pagination import MAX_LIMIT, MAX_OFFSET, Page, PageRequest

TOTAL_HEADER = "X-Total-Count"


def page_request(
    limit: Annotated[
        int | None, Query(description=f"At most this many items (1 to {MAX_LIMIT}).")
    ] = None,
    offset: Annotated[
        int | None, Query(description=f"Skip this many items first (0 to {MAX_OFFSET}).")
    ] = None,
) -> PageRequest:
    """The page asked for; out-of-range values are the core's `InvalidInput` (400)."""
    # Bounds are checked by PageRequest, not Query(ge=...), so every face refuses them alike.
    return PageRequest(limit=limit, offset=offset or 0)


PageDep = Annotated[PageRequest, Depends(page_request)]


def page_headers(response: Response, page: Page[Any]) -> None:
    """Tell the client how many items the whole list has."""
    response.headers[TOTAL_HEADER] = str(page.total)
