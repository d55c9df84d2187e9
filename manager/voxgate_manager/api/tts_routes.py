"""/api/tts/*: generate (streamed audio), generate-segments, models, voices, long-text jobs with
SSE progress, and the user's clip history. Every route needs a signed-in user or a per-user key;
jobs and clips are only ever visible to their owner (another user's id answers 404)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from voxgate_manager.accounts.service import Principal
from voxgate_manager.api.common import parse_body, require_user
from voxgate_manager.api.speech_path import controller, request_model, stream_speech, synthesize
from voxgate_manager.errors import APIError
from voxgate_manager.jobs.chunking import sentences
from voxgate_manager.jobs.clips import MEDIA_TYPES
from voxgate_manager.jobs.runner import TERMINAL_EVENTS
from voxgate_manager.jobs.wav import split_wav, wav_header
from voxgate_manager.lifecycle.machine import State

router = APIRouter()
Format = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
SSE_KEEPALIVE_S = 15.0
VOICE_UPLOAD_MAX = 32 * 1024 * 1024


def _services(request: Request) -> Any:
    return request.app.state.app_services


class Generate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model_id: str | None = Field(default=None, max_length=200)
    text: str = Field(min_length=1)
    voice: str = Field(default="alloy", min_length=1, max_length=200)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    format: Format = "mp3"


class JobBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model_id: str | None = Field(default=None, max_length=200)
    text: str = Field(min_length=1)
    voice: str = Field(default="alloy", min_length=1, max_length=200)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    format: Literal["wav"] = "wav"


def _limit(text: str, limit: int) -> None:
    if len(text) > limit:
        raise APIError(400, f"The text has {len(text)} characters; at most {limit} are allowed here"
                       + (" (use /api/tts/jobs for long text)." if limit < 100_000 else "."),
                       param="text", code="text_too_long")


class _TeeResponse(Response):
    """Relays a streamed answer unchanged and keeps a copy; a complete 200 becomes a history clip,
    saved before the last piece goes out, so the client's next look at its history finds it."""

    def __init__(self, inner: Response, on_complete: Any, limit: int = 64 * 1024 * 1024) -> None:  # noqa: D107
        self.inner, self.on_complete, self.limit = inner, on_complete, limit
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts: list[bytes] = []
        size, status = 0, 0

        async def tee(msg: dict[str, Any]) -> None:
            nonlocal size, status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            elif msg["type"] == "http.response.body":
                body = msg.get("body", b"")
                size += len(body)
                if size <= self.limit:
                    parts.append(body)
                if not msg.get("more_body", False) and status == 200 and size <= self.limit:
                    await self._keep(b"".join(parts))
            await send(msg)

        await self.inner(scope, receive, tee)

    async def _keep(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self.on_complete, data)
        except Exception:  # noqa: BLE001 - history is a convenience; the client has its audio
            import logging

            logging.getLogger("voxgate.manager.app_api").exception("could not keep the clip")


@router.post("/api/tts/generate", response_model=None)
async def generate(request: Request, principal: Principal = Depends(require_user)) -> Any:
    """Audio streamed as the model makes it (``x-voxgate-clip`` names the history entry)."""
    services = _services(request)
    body = await parse_body(request, Generate)
    _limit(body.text, services.settings.generate_max_chars)
    ctl = controller(services.manager, body.model_id)
    payload = {"input": body.text, "voice": body.voice, "speed": body.speed, "response_format": body.format}
    inner = await stream_speech(services.manager, ctl, payload, request, principal.user.id)
    if inner.status_code != 200:
        return inner

    def keep(data: bytes) -> None:
        services.clips.save(principal.user.id, ctl.id, body.voice, body.format, body.text, data)

    return _TeeResponse(inner, keep)


@router.post("/api/tts/generate-segments")
async def generate_segments(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    """The text cut into sentences, each made separately; one WAV with every segment's start and
    end in it (seconds), for captions or karaoke-style highlighting."""
    services = _services(request)
    body = await parse_body(request, Generate)
    _limit(body.text, services.settings.generate_max_chars)
    ctl = controller(services.manager, body.model_id)
    pieces = sentences(body.text)
    if not pieces:
        raise APIError(400, "The text has nothing to read aloud.", param="text", code="invalid_value")
    segments, pcm_parts, fmt0, t = [], [], None, 0.0
    for i, piece in enumerate(pieces):
        data = await synthesize(services.manager, ctl, {"input": piece, "voice": body.voice, "speed": body.speed,
                                                        "response_format": "wav"}, principal.user.id, request)
        fmt, pcm = split_wav(data)
        fmt0 = fmt0 or fmt
        duration = len(pcm) / fmt.bytes_per_second
        segments.append({"index": i, "text": piece, "start_s": round(t, 3), "end_s": round(t + duration, 3),
                         "duration_s": round(duration, 3)})
        pcm_parts.append(pcm)
        t += duration
    pcm_all = b"".join(pcm_parts)
    assert fmt0 is not None
    audio = wav_header(fmt0, len(pcm_all)) + pcm_all
    return {"object": "tts.segments", "model_id": ctl.id, "voice": body.voice, "format": "wav",
            "sample_rate": fmt0.sample_rate, "duration_s": round(t, 3), "segments": segments,
            "audio_base64": base64.b64encode(audio).decode()}


def _model_card(ctl: Any, settings: Any) -> dict[str, Any]:
    rt = ctl.spec.runtime
    gpu = bool(getattr(rt, "gpus", None)) or bool(ctl.spec.vram_mb)
    cloning = "chatterbox" in ctl.id or "chatterbox" in (ctl.spec.upstream_model or "")
    return {
        "id": ctl.id, "object": "tts.model", "aliases": ctl.spec.aliases, "state": ctl.state.value,
        "runtime": ctl.runtime.kind, "provider": "voxgate" if ctl.runtime.kind != "remote" else "voxgate (remote)",
        "capabilities": {"streaming": True, "speed": True, "voice_cloning": cloning, "segments": True, "jobs": True},
        "formats": FORMATS, "max_characters": settings.generate_max_chars, "job_max_characters": settings.job_max_chars,
        "cost": {"per_1k_chars_usd": 0.0, "hint": "local GPU" if gpu else "local CPU"},
        "hardware": "gpu" if gpu else "cpu", "vram_mb": ctl.spec.vram_mb, "locale": "en-US",
    }


@router.get("/api/tts/models")
async def models(request: Request, _: Principal = Depends(require_user)) -> dict[str, Any]:
    services = _services(request)
    default = services.manager.models.resolve(None)
    return {"object": "list", "default_model": default.id if default else None,
            "data": [_model_card(c, services.settings) for c in services.manager.controllers.values()]}


# -- voices ---------------------------------------------------------------------------------------

@router.get("/api/tts/voices")
async def voices(request: Request, model_id: str | None = None, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    """``voices``: what the model speaks with, if it runs (this never starts it), else the last
    list seen. ``library``: the reference clips uploaded through the studio for this model (a
    model that clones lists them among its voices too: ``usable``)."""
    services = _services(request)
    ctl = controller(services.manager, model_id)
    data, cached = None, False
    if ctl.state is State.READY:
        try:
            resp = await services.manager.http.get(ctl.runtime.base_url + "/v1/audio/voices", timeout=10.0,
                                                   headers={"authorization": f"Bearer {ctl.spec.api_key}"} if ctl.spec.api_key else {})
            if resp.status_code == 200:
                data = resp.json()
                ctl.voices_cache = (200, resp.content, "/v1/audio/voices?")
        except Exception:  # noqa: BLE001 - fall back to the last list seen
            data = None
    if data is None and ctl.voices_cache is not None:
        data, cached = json.loads(ctl.voices_cache[1]), True
    items = [v for v in (data or {}).get("voices", []) if isinstance(v, dict)]
    speakable = {v.get("id") for v in items}
    me = principal.user
    library = [{"id": r["voice_id"], "name": r["name"] or r["voice_id"], "language": r["language"], "seconds": r["seconds"],
                "uploaded_by_me": r["user_id"] == me.id, "deletable": r["user_id"] == me.id or me.is_admin,
                "usable": r["voice_id"] in speakable, "preview_url": f"/api/tts/voices/{r['voice_id']}/audio?model_id={ctl.id}"}
               for r in services.db.all("SELECT * FROM voice_owners WHERE model = ? ORDER BY created_at", (ctl.id,))]
    return {"object": "list", "model_id": ctl.id, "state": ctl.state.value, "cached": cached, "voices": items,
            "library": library}


@router.post("/api/tts/voices", status_code=201)
async def upload_voice(request: Request, model_id: str | None = None, principal: Principal = Depends(require_user)) -> Any:
    """A reference clip (multipart ``file``, ``name``, ``language``) into the model's voice library."""
    services = _services(request)
    ctl = controller(services.manager, model_id)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(415, "Send the voice as multipart/form-data with a 'file' field.", code="unsupported_media_type")
    raw = await request.body()
    if len(raw) > VOICE_UPLOAD_MAX:
        raise APIError(413, f"Request body is larger than {VOICE_UPLOAD_MAX} bytes.", code="request_too_large")
    status, media, data = await request_model(services.manager, ctl, "POST", "/v1/audio/voices", body=raw, content_type=ctype)
    if status == 201:
        made = json.loads(data)
        if made.get("id"):
            services.db.execute("INSERT OR REPLACE INTO voice_owners (model, voice_id, user_id, name, language, seconds, created_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (ctl.id, made["id"], principal.user.id, str(made.get("name") or ""), str(made.get("language") or ""),
                                 made.get("duration_s") or made.get("seconds"), time.time()))
    return Response(data, status_code=status, media_type=media)


def _may_change_voice(services: Any, ctl: Any, voice_id: str, principal: Principal) -> None:
    row = services.db.one("SELECT user_id FROM voice_owners WHERE model = ? AND voice_id = ?", (ctl.id, voice_id))
    if principal.user.is_admin or (row is not None and row["user_id"] == principal.user.id):
        return
    raise APIError(403, "Only the user who uploaded this voice (or an admin) can delete it.", code="forbidden")


@router.delete("/api/tts/voices/{voice_id}")
async def delete_voice(voice_id: str, request: Request, model_id: str | None = None,
                       principal: Principal = Depends(require_user)) -> Any:
    services = _services(request)
    ctl = controller(services.manager, model_id)
    _may_change_voice(services, ctl, voice_id, principal)
    status, media, data = await request_model(services.manager, ctl, "DELETE", f"/v1/audio/voices/{voice_id}")
    if status == 200:
        services.db.execute("DELETE FROM voice_owners WHERE model = ? AND voice_id = ?", (ctl.id, voice_id))
    return Response(data, status_code=status, media_type=media)


@router.get("/api/tts/voices/{voice_id}/audio")
async def voice_audio(voice_id: str, request: Request, model_id: str | None = None, _: Principal = Depends(require_user)) -> Any:
    """The voice's reference clip, for the preview button."""
    services = _services(request)
    ctl = controller(services.manager, model_id)
    status, media, data = await request_model(services.manager, ctl, "GET", f"/v1/audio/voices/{voice_id}?download=true")
    return Response(data, status_code=status, media_type=media)


# -- jobs -----------------------------------------------------------------------------------------

def _own_job(services: Any, job_id: str, principal: Principal) -> dict[str, Any]:
    job = services.jobs.get(job_id, principal.user.id)
    if job is None:
        raise APIError(404, f"No job '{job_id}'.", param="job_id", code="job_not_found")
    return job


@router.post("/api/tts/jobs", status_code=202)
async def create_job(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    services = _services(request)
    body = await parse_body(request, JobBody, limit=2 * 1024 * 1024)
    _limit(body.text, services.settings.job_max_chars)
    ctl = controller(services.manager, body.model_id)
    return services.jobs.create(principal.user.id, ctl.id, body.voice, body.speed, body.text)


@router.get("/api/tts/jobs")
async def list_jobs(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return {"object": "list", "data": _services(request).jobs.list(principal.user.id)}


@router.get("/api/tts/jobs/{job_id}")
async def get_job(job_id: str, request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return _own_job(_services(request), job_id, principal)


@router.post("/api/tts/jobs/{job_id}/cancel")
@router.delete("/api/tts/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    services = _services(request)
    _own_job(services, job_id, principal)
    return services.jobs.cancel(job_id)


@router.get("/api/tts/jobs/{job_id}/audio", response_model=None)
async def job_audio(job_id: str, request: Request, principal: Principal = Depends(require_user)) -> Any:
    services = _services(request)
    job = _own_job(services, job_id, principal)
    if job["status"] != "complete":
        raise APIError(409, f"The job is {job['status']}; its audio exists once it is complete.", code="job_not_complete")
    return FileResponse(services.jobs.result_path(job_id), media_type="audio/wav", filename=f"{job_id}.wav")


@router.get("/api/tts/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, principal: Principal = Depends(require_user)) -> StreamingResponse:
    """Server-sent events in order (``id`` is the sequence number; ``Last-Event-ID`` resumes):
    ``progress``, ``chunk-progress``, then ``complete`` or ``error``, after which the stream ends."""
    services = _services(request)
    _own_job(services, job_id, principal)
    try:
        last = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
    except ValueError:
        last = 0

    async def stream() -> Any:
        nonlocal last
        yield "retry: 2000\n\n"
        while not services.jobs.shutting_down:
            waiter = services.jobs.change_waiter(job_id)
            for ev in services.jobs.events_after(job_id, last):
                last = ev["seq"]
                yield f"id: {ev['seq']}\nevent: {ev['event']}\ndata: {ev['data']}\n\n"
                if ev["event"] in TERMINAL_EVENTS:
                    return
            try:
                await asyncio.wait_for(waiter.wait(), SSE_KEEPALIVE_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- history --------------------------------------------------------------------------------------

@router.get("/api/tts/history")
async def history(request: Request, principal: Principal = Depends(require_user)) -> dict[str, Any]:
    return {"object": "list", "data": _services(request).clips.list(principal.user.id)}


@router.get("/api/tts/history/{clip_id}/audio", response_model=None)
async def history_audio(clip_id: str, request: Request, principal: Principal = Depends(require_user)) -> Any:
    found = _services(request).clips.get(clip_id, principal.user.id)
    if found is None:
        raise APIError(404, f"No clip '{clip_id}'.", param="clip_id", code="clip_not_found")
    clip, path = found
    return FileResponse(path, media_type=MEDIA_TYPES.get(clip["format"], "application/octet-stream"),
                        filename=f"{clip_id}.{clip['format']}")


@router.delete("/api/tts/history/{clip_id}")
async def delete_clip(clip_id: str, request: Request, principal: Principal = Depends(require_user)) -> JSONResponse:
    if not _services(request).clips.delete(clip_id, principal.user.id):
        raise APIError(404, f"No clip '{clip_id}'.", param="clip_id", code="clip_not_found")
    return JSONResponse({"id": clip_id, "deleted": True})
