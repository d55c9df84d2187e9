"""Voice management: POST /v1/audio/voices (upload), GET and DELETE /v1/audio/voices/{id}.

The list (GET /v1/audio/voices) lives in ``catalog.py``: it shows every engine's voices, and a
cloning engine's ``voices()`` includes this library.

The upload is read from the raw request stream and refused with 413 as soon as it passes the
limit, before any multipart parsing or spooling to disk; only then is it parsed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import UploadFile

from voxgate_server.errors import APIError
from voxgate_server.settings import Settings
from voxgate_server.voice_library import VoiceError, VoiceLibrary, VoiceLibrarySettings

router = APIRouter()

# Room for the multipart boundaries and the small text fields around the file.
_MULTIPART_OVERHEAD = 64 * 1024
_MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}


def library_for(request: Request) -> VoiceLibrary:
    state = request.app.state
    library = getattr(state, "voice_library", None)
    if library is None:
        settings: Settings = getattr(state, "settings", None) or Settings()
        library = VoiceLibrary(settings.voices_dir, VoiceLibrarySettings())
        state.voice_library = library
    return library


def _api_error(exc: VoiceError) -> APIError:
    return APIError(exc.status, exc.message, param=exc.param, code=exc.code)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"The upload is larger than {limit} bytes.", param="file", code="file_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"The upload is larger than {limit} bytes.", param="file", code="file_too_large")
    return bytes(body)


async def _parse_form(request: Request, body: bytes) -> Any:
    """Let Starlette's parser read the already-bounded body."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        return await replay.form(max_files=1, max_fields=10)
    except Exception as exc:  # MultiPartException, malformed bodies
        raise APIError(400, f"Could not read the multipart form: {exc}", code="invalid_multipart") from exc


def _text_field(form: Any, name: str, required: bool = False, default: str = "") -> str:
    value = form.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise APIError(400, f"Missing required parameter: '{name}'.", param=name,
                           code="missing_required_parameter")
        return default
    if not isinstance(value, str):
        raise APIError(400, f"'{name}' must be a text field.", param=name, code="invalid_value")
    return value.strip()


@router.post("/v1/audio/voices", status_code=201)
async def upload_voice(request: Request) -> JSONResponse:
    """Multipart fields: ``file`` (wav/mp3/flac), ``name``, optional ``language``, ``description``."""
    library = library_for(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise APIError(415, "Send the voice as multipart/form-data with a 'file' field.",
                       code="unsupported_media_type")
    body = await _read_limited(request, library.settings.upload_max_bytes + _MULTIPART_OVERHEAD)
    form = await _parse_form(request, body)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "Missing required parameter: 'file'.", param="file",
                           code="missing_required_parameter")
        name = _text_field(form, "name", default=(upload.filename or "").rsplit(".", 1)[0])
        if not name:
            raise APIError(400, "Missing required parameter: 'name'.", param="name",
                           code="missing_required_parameter")
        language = _text_field(form, "language", default="en")
        description = _text_field(form, "description")
        data = await upload.read()
    finally:
        await form.close()
    try:
        voice = await asyncio.to_thread(library.add, name, data, language=language, description=description)
    except VoiceError as exc:
        raise _api_error(exc) from None
    return JSONResponse(voice.as_dict(), status_code=201)


@router.get("/v1/audio/voices/{voice_id}", response_model=None)
async def get_voice(voice_id: str, request: Request, download: bool = False) -> Any:
    """The voice's metadata; ``?download=1`` returns the clip itself."""
    voice = library_for(request).get(voice_id)
    if voice is None:
        raise APIError(404, f"No voice '{voice_id}' in the voice library.", param="voice_id", code="voice_not_found")
    if download:
        return FileResponse(voice.path, media_type=_MEDIA_TYPES.get(voice.format, "application/octet-stream"),
                            filename=voice.path.name)
    return voice.as_dict()


@router.delete("/v1/audio/voices/{voice_id}")
async def delete_voice(voice_id: str, request: Request) -> dict[str, Any]:
    if not library_for(request).delete(voice_id):
        raise APIError(404, f"No voice '{voice_id}' in the voice library.", param="voice_id", code="voice_not_found")
    return {"id": voice_id, "object": "voice.deleted", "deleted": True}
