"""Work that is only worth doing while its HTTP client is still there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")
# What to answer a client that left (nginx's 499): it never reaches anyone.
CLIENT_CLOSED_REQUEST = 499


class ClientGone(Exception):
    """The client hung up before the work was done; the work was cancelled."""


async def _disconnected(request: Request) -> None:
    # The body has been read by now, so the next ASGI message is the disconnect (uvicorn
    # sends it when the connection drops, or once the response is done).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; if the client disconnects first, cancel it and raise ClientGone.

    Servers do not cancel a handler whose client left: without this an exec would run on in
    the sandbox until its timeout, for nobody.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        # The work is not done, so the watcher is: by a disconnect, or by failing to watch.
        if not task.done() and not watcher.cancelled() and watcher.exception() is not None:
            await task  # nothing to watch with: just finish the work
    except BaseException:  # cancelled ourselves: take the work down too
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # Wait until the cancellation has been handled (the agent call torn down) before going.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
