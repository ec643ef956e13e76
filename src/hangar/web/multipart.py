"""Streaming `multipart/form-data` uploads of one file plus small text fields.

Starlette's `request.form()` spools whole files before the route runs; uploads here go
straight to their destination chunk by chunk. When a text field the destination depends
on arrives after the file, the file is spooled to a bounded temporary file instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from hangar.web.body import allow_body

FIELD_LIMIT = 64 * 1024


class MultipartError(ValueError):
    """The body is not the multipart form expected."""


class UploadTooLarge(ValueError):
    """The file part exceeded the limit."""


@dataclass
class _Part:
    name: str = ""
    headers: dict[bytes, bytes] = field(default_factory=dict)


Sink = Callable[[dict[str, str], AsyncIterator[bytes]], Coroutine[Any, Any, int]]


async def stream_upload(
    request: Request, *, file_field: str, required: tuple[str, ...], limit: int, sink: Sink
) -> int:
    """Parse the form, calling `sink(fields, chunks)` for the file once `required` are known."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MultipartError("expected multipart/form-data with a boundary")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FIELD_LIMIT:
        raise UploadTooLarge(f"file exceeds {limit} bytes")
    # The file's own limit (with room for the small fields) replaces the face's body limit.
    allow_body(request, limit + 4 * FIELD_LIMIT)

    fields: dict[str, str] = {}
    events: list[tuple[str, bytes]] = []  # filled by parser callbacks, drained per chunk
    part = _Part()
    header = [b"", b""]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        part.headers[header[0].lower()] = header[1]
        header[0] = header[1] = b""

    def on_headers_finished() -> None:
        _, opts = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = opts.get(b"name", b"").decode("utf-8", "replace")
        # The name travels with the event: one chunk can hold several parts.
        events.append(("begin", part.name.encode()))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.append(("data", bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(("end", b""))

    def on_part_begin() -> None:
        part.headers.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    spool: tempfile.SpooledTemporaryFile[bytes] | None = None
    upload: asyncio.Task[int] | None = None
    current = ""
    text = bytearray()
    received = 0
    seen_file = False

    async def from_queue() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    async def from_spool() -> AsyncIterator[bytes]:
        assert spool is not None
        spool.seek(0)
        while chunk := await asyncio.to_thread(spool.read, 1024 * 1024):
            yield chunk

    async def feed(chunk: bytes) -> None:
        if upload is not None and upload.done():
            upload.result()  # the sink failed: stop reading and report why
        await queue.put(chunk)

    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for kind, data in events:
                if kind == "begin":
                    current = data.decode()
                    text.clear()
                    if current == file_field:
                        if seen_file:
                            raise MultipartError(f"more than one {file_field!r} part")
                        seen_file = True
                        if all(f in fields for f in required):
                            upload = asyncio.create_task(sink(dict(fields), from_queue()))
                        else:
                            spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
                elif kind == "data":
                    if current == file_field:
                        received += len(data)
                        if received > limit:
                            raise UploadTooLarge(f"file exceeds {limit} bytes")
                        if upload is not None:
                            await feed(data)
                        elif spool is not None:
                            await asyncio.to_thread(spool.write, data)
                    else:
                        text += data
                        if len(text) > FIELD_LIMIT:
                            raise MultipartError(f"field {current!r} is too long")
                elif kind == "end":
                    if current != file_field and current:
                        fields[current] = text.decode("utf-8", "replace")
                    current = ""
            events.clear()
        parser.finalize()
        if not seen_file:
            raise MultipartError(f"missing {file_field!r} part")
        missing = [f for f in required if f not in fields]
        if missing:
            raise MultipartError(f"missing field(s): {', '.join(missing)}")
        if upload is None:
            return await sink(dict(fields), from_spool())
        await queue.put(None)
        return await upload
    finally:
        if upload is not None and not upload.done():
            upload.cancel()
            with contextlib.suppress(BaseException):
                await upload
        if spool is not None:
            spool.close()
