"""`/v1/capsules/{id}/files/*`: upload, download, list, mkdir, remove (plain and streaming)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hangar.core.errors import InvalidInput, TooLarge
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import render_capsules as render
from hangar.faces.wrenn import schemas as w
from hangar.faces.wrenn.deps import KeyOrUserDep
from hangar.web.deps import PlatformDep
from hangar.web.multipart import MultipartError, UploadTooLarge, stream_upload
from hangar.web.services import CapsulesDep

router = APIRouter(prefix="/v1/capsules/{id}/files", tags=["capsules"])


async def _upload(
    id: str, request: Request, principal: KeyOrUserDep, capsules: CapsulesDep, platform: PlatformDep
) -> Response:
    capsule_id = ids.decode(ids.CAPSULE, id)
    await capsules.running(principal.require_team(), capsule_id)  # 404/409 before reading the body

    async def sink(fields: dict[str, str], chunks: AsyncIterator[bytes]) -> int:
        return await capsules.write_file(
            principal.require_team(), capsule_id, fields["path"], chunks
        )

    try:
        await stream_upload(
            request,
            file_field="file",
            required=("path",),
            limit=platform.settings.capsules.max_file_bytes,
            sink=sink,
        )
    except UploadTooLarge as exc:
        raise TooLarge(str(exc)) from exc
    except MultipartError as exc:
        raise InvalidInput(str(exc)) from exc
    return Response(status_code=204)


async def _download(
    id: str, body: w.ReadFileRequest, principal: KeyOrUserDep, capsules: CapsulesDep
) -> StreamingResponse:
    file = await capsules.open_file(
        principal.require_team(), ids.decode(ids.CAPSULE, id), body.path
    )
    return StreamingResponse(file.chunks(), media_type="application/octet-stream")


router.add_api_route("/write", _upload, methods=["POST"], status_code=204, name="uploadFile")
router.add_api_route(
    "/stream/write", _upload, methods=["POST"], status_code=204, name="streamUploadFile"
)
router.add_api_route(
    "/read",
    _download,
    methods=["POST"],
    response_class=StreamingResponse,
    name="downloadFile",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
router.add_api_route(
    "/stream/read",
    _download,
    methods=["POST"],
    response_class=StreamingResponse,
    name="streamDownloadFile",
    responses={200: {"content": {"application/octet-stream": {}}}},
)


@router.post("/list", response_model=w.ListDirResponse, response_model_exclude_none=True)
async def list_dir(
    id: str, body: w.ListDirRequest, principal: KeyOrUserDep, capsules: CapsulesDep
) -> w.ListDirResponse:
    """Entries under a directory, `depth` levels deep."""
    entries = await capsules.list_dir(
        principal.require_team(), ids.decode(ids.CAPSULE, id), body.path, body.depth
    )
    return w.ListDirResponse(entries=[render.entry(e) for e in entries])


@router.post("/mkdir", response_model=w.MakeDirResponse, response_model_exclude_none=True)
async def make_dir(
    id: str, body: w.MakeDirRequest, principal: KeyOrUserDep, capsules: CapsulesDep
) -> w.MakeDirResponse:
    """Create a directory and its parents."""
    made = await capsules.make_dir(principal.require_team(), ids.decode(ids.CAPSULE, id), body.path)
    return w.MakeDirResponse(entry=render.entry(made))


@router.post("/remove", status_code=204)
async def remove(
    id: str, body: w.RemoveRequest, principal: KeyOrUserDep, capsules: CapsulesDep
) -> Response:
    """Remove a file or directory tree."""
    await capsules.remove(principal.require_team(), ids.decode(ids.CAPSULE, id), body.path)
    return Response(status_code=204)
