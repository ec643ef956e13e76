"""The API throughput baseline: a bare Starlette JSON endpoint under Hangar's uvicorn settings.

`python -m bench.baseline_app PORT BODY.json [DB]` serves `GET /wrenn/v1/capsules/{id}` with
the JSON body of a real capsule, on uvicorn configured exactly as `hangar serve` configures
its main port (hangar/server/run.py: one process, auto loop and HTTP implementation, no
access log, proxy headers).

With DB (the server's SQLite file), `GET /db/capsules/{uuid}` also does the two lookups
Hangar does per request, as plain SQL on one aiosqlite connection (no ORM, no FastAPI): the
API key by hash joined to its live team, then the team's capsule. That splits the price of
the database round trips from that of the framework and ORM.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

KEY_SQL = (
    "SELECT api_keys.team_id FROM api_keys JOIN teams ON teams.id = api_keys.team_id "
    "WHERE api_keys.key_hash = ? AND teams.deleted_at IS NULL"
)
CAPSULE_SQL = "SELECT * FROM capsules WHERE id = ? AND team_id = ? AND status != 'stopped'"


def build(body: Any, db_path: str | None = None) -> Starlette:
    """A canned JSON answer, and optionally the same answer after two SQLite lookups."""
    state: dict[str, aiosqlite.Connection] = {}

    async def capsule(request: Request) -> JSONResponse:
        return JSONResponse({**body, "id": request.path_params["id"]})

    async def with_db(request: Request) -> JSONResponse:
        db = state["db"]
        key = hashlib.sha256(request.headers.get("x-api-key", "").encode()).hexdigest()
        async with db.execute(KEY_SQL, (key,)) as cursor:
            team = await cursor.fetchone()
        if team is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        async with db.execute(CAPSULE_SQL, (request.path_params["id"], team[0])) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(body)

    async def livez(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if db_path:
            state["db"] = await aiosqlite.connect(db_path)
        try:
            yield
        finally:
            if "db" in state:
                await state["db"].close()

    routes = [
        Route("/wrenn/v1/capsules/{id}", capsule),
        Route("/db/capsules/{id}", with_db),
        Route("/livez", livez),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    """Serve until killed."""
    port, body_path = int(sys.argv[1]), sys.argv[2]
    db_path = sys.argv[3] if len(sys.argv) > 3 else None
    with open(body_path) as f:
        body = json.load(f)
    config = uvicorn.Config(
        build(body, db_path),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        ws_ping_interval=20,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
