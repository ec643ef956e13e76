"""Structured logging for the whole process."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog


def _drop_color_message(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    # uvicorn duplicates each message with ANSI colours in `extra`; keep the plain one.
    event.pop("color_message", None)
    return event


# A URL or an absolute path followed by its query string: `/console/ws?session=<token>`.
_QUERY = re.compile(
    r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#\"'<>]*)?"  # an optional scheme and host
    r"/[^\s?#\"'<>]*)"  # a path
    r"\?[^\s#\"'<>]*"  # its query string
)


def without_query_strings(value: Any) -> Any:
    """`value` with the query string of every URL or path in it removed (recursively)."""
    if isinstance(value, str):
        return _QUERY.sub(r"\1", value) if "?" in value else value
    if isinstance(value, dict):
        return {k: without_query_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_query_strings(v) for v in value)
    return value


def _drop_query_strings(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    # Query strings carry secrets (console tokens, OAuth codes and tokens), and libraries log
    # them: uvicorn writes every WebSocket's path with its query. None reaches the output.
    return {k: without_query_strings(v) for k, v in event.items()}


# Requests that recur on a timer (probes, scrapes, agents' heartbeats): one access line
# each would bury the rest, so they are logged only at debug level, and only when they succeed.
_ROUTINE = re.compile(r"^(/livez|/readyz|/healthz|/metrics|/[a-z]+/v1/hosts/[^/]+/heartbeat)$")


def routine_request(event: structlog.types.EventDict) -> bool:
    """Whether `event` is the access line of a successful routine request."""
    status, path = event.get("status"), event.get("path")
    return (
        event.get("event") == "request"
        and isinstance(status, int)
        and 0 < status < 400
        and isinstance(path, str)
        and _ROUTINE.match(path) is not None
    )


def _quiet_routine_requests(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    if routine_request(event):
        raise structlog.DropEvent
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """JSON lines on stderr, or console lines for humans (`auto`: when stderr is a terminal)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Below debug level, routine requests leave no line (see `_ROUTINE`).
    quiet = [_quiet_routine_requests] if numeric > logging.DEBUG else []
    structlog.configure(
        processors=[*quiet, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_color_message,
                # Tracebacks become text first, so that they are scrubbed like the rest.
                structlog.processors.format_exc_info,
                _drop_query_strings,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's access log prints query strings; ours does not, so it replaces theirs.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request's full URL at INFO; a Telegram bot token is part of its path.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
