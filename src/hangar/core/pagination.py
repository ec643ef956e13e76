"""A page of a list: what a caller asks for (`PageRequest`) and what it gets (`Page`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.errors import InvalidInput

T = TypeVar("T")
U = TypeVar("U")

MAX_LIMIT = 1000
# Far beyond any list a team has; keeps the value inside every database's integer range.
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class PageRequest:
    """At most `limit` items (None: all of them) after skipping `offset`."""

    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")

    @property
    def everything(self) -> bool:
        """True when nothing is left out (no limit, no offset)."""
        return self.limit is None and self.offset == 0

    def apply(self, query: Select[Any]) -> Select[Any]:
        """`query` cut to this page (it must be ordered, for pages to be stable)."""
        query = query.offset(self.offset) if self.offset else query
        return query.limit(self.limit) if self.limit is not None else query


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items of one page and how many there are in all."""

    items: list[T]
    total: int
    request: PageRequest

    @property
    def has_more(self) -> bool:
        """True when items remain after this page."""
        return self.request.offset + len(self.items) < self.total

    def map(self, render: Callable[[T], U]) -> Page[U]:
        """The same page with every item rendered."""
        return Page([render(item) for item in self.items], self.total, self.request)


async def fetch(session: AsyncSession, query: Select[Any], page: PageRequest) -> Page[Any]:
    """One page of an ordered single-entity `query`, with the total of the whole list.

    The total costs a second query, so it is only counted when the page leaves items out.
    """
    items: Sequence[Any] = (await session.scalars(page.apply(query))).all()
    short = page.limit is None or len(items) < page.limit
    if short and (items or page.offset == 0):
        total = page.offset + len(items)  # the last page: nothing follows it
    else:  # a full page, or one past the end (how far is the end?)
        counted = select(func.count()).select_from(query.order_by(None).subquery())
        total = int((await session.scalar(counted)) or 0)
    return Page(list(items), total, page)
