"""The RealtimeTTS API (KoljaB/RealtimeTTS's server shape) as a compatibility router.

| route | what |
|---|---|
| ``POST /v1/tts/generate`` | JSON ``{text, engine?, voice?, speed?, language?}`` -> one WAV |
| ``GET /v1/tts/stream-sse?text=&engine=&voice=&speed=&format=`` | SSE: ``audio`` ``{chunk, index}`` events, then ``metrics`` and ``done`` |
| ``WS /v1/tts/stream`` | ``{"action": "generate", "text", ...}``, ``stop``, ``ping`` (and ``append``/``flush``); JSON ``audio`` ``{chunk, index}``, ``metrics``, ``done``, ``pong``, ``error`` |
| ``GET /v1/engines``, ``POST /v1/engines/switch`` | the engines, and the server's default engine (persisted; loads it if needed; ``tts-1`` follows it) |
| ``GET /v1/voices``, ``POST /v1/voices/create``, ``DELETE /v1/voices/{id}``, ``POST /v1/voices/{id}/set`` | voices of an engine and the library; the current voice used when a request names none (persisted per engine) |

Every request goes through the OpenAI route's validation (``speech_job``): the same fields,
limits, error envelope, admission and engine workers.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from voxgate_server.audio.encode import StreamEncoder
from voxgate_server.engines import FACTORIES, create_engine
from voxgate_server.engines.base import Cancelled
from voxgate_server.errors import APIError, envelope
from voxgate_server.routes import voice_library as library_routes
from voxgate_server.routes.realtimetts_state import RealtimeTTSSettings, SwitchState
from voxgate_server.routes.speech import read_body
from voxgate_server.routes.ws import Session, serve
from voxgate_server.runtime import EngineSlot, EngineState, Runtime
from voxgate_server.synthesis.speech_job import SpeechJob, pcm, pcm_to_float, prepare, validate_body

router = APIRouter()

_DEFAULT_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


# -- state: default engine, current voices ------------------------------------------------------

def _state(app: FastAPI) -> SwitchState:
    state = getattr(app.state, "realtimetts", None)
    if state is None:
        settings = app.state.settings
        path = RealtimeTTSSettings().state_file or settings.voices_dir / ".realtimetts.json"
        state = SwitchState(path)
        app.state.realtimetts = state
    return state


def _add_slot(runtime: Runtime, engine_id: str) -> EngineSlot:
    slot = EngineSlot(engine=create_engine(engine_id, runtime.settings))
    runtime.slots[engine_id] = slot
    runtime.metrics.engine_ready.labels(engine_id).set(0)
    return slot


def _point_aliases(runtime: Runtime, engine_id: str) -> None:
    """``tts-1`` and friends follow the switched engine, unless VOXGATE_MODEL_ALIASES names them."""
    for alias in _DEFAULT_ALIASES:
        if alias not in runtime.settings.model_aliases:
            runtime.aliases[alias] = engine_id


def install(app: FastAPI) -> None:
    """At start-up: apply the persisted default engine (added to the engines to load if needed)."""
    runtime: Runtime = app.state.runtime
    state = _state(app)
    if state.engine is None:
        return
    if state.engine not in runtime.slots:
        if state.engine not in FACTORIES:
            return
        _add_slot(runtime, state.engine)
    _point_aliases(runtime, state.engine)


def default_engine(request_app: FastAPI) -> str:
    runtime: Runtime = request_app.state.runtime
    state = _state(request_app)
    if state.engine and state.engine in runtime.slots:
        return state.engine
    return runtime.aliases.get("tts-1") or next(iter(runtime.slots))


def speech_fields(app: FastAPI, data: dict[str, Any], default_format: str) -> dict[str, Any]:
    """A RealtimeTTS request as the fields of ``POST /v1/audio/speech``."""
    runtime: Runtime = app.state.runtime
    fields = {k: v for k, v in data.items() if k not in ("action", "id", "text", "engine", "format")}
    engine = data.get("engine") or data.get("model") or default_engine(app)
    if not isinstance(engine, str):
        raise APIError(400, "'engine' must be a string.", param="engine", code="invalid_value")
    fields["model"] = engine
    if "text" in data:
        fields["input"] = data["text"]
    fields.setdefault("response_format", data.get("format") or default_format)
    if not fields.get("voice"):
        engine_id = engine if engine in runtime.slots else runtime.aliases.get(engine, engine)
        current = _state(app).voices.get(engine_id)
        slot = runtime.slots.get(engine_id)
        if current is None and slot is not None and slot.state is EngineState.READY:
            current = slot.engine.default_voice()
        fields["voice"] = current or "alloy"
    return fields


def _prepare(app: FastAPI, data: Any, default_format: str) -> SpeechJob:
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    runtime: Runtime = app.state.runtime
    try:
        return prepare(runtime, validate_body(runtime, speech_fields(app, data, default_format)))
    except APIError as exc:
        raise _renamed(exc) from None


def _renamed(exc: APIError) -> APIError:
    """Name the fields as this API does (``text``, ``engine``, ``format``)."""
    renamed = {"input": "text", "model": "engine", "response_format": "format"}
    if exc.param in renamed:
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{renamed[exc.param]}'")
        exc.param = renamed[exc.param]
    return exc


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(415, f"Unsupported content type '{content_type or 'none'}': send application/json.",
                       code="unsupported_media_type")
    raw = await read_body(request, request.app.state.runtime.settings.max_body_bytes)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "We could not parse the JSON body of your request.", code="invalid_json") from None


# -- synthesis -------------------------------------------------------------------------------------

@router.post("/v1/tts/generate")
async def generate(request: Request) -> Response:
    """The whole utterance as one WAV (with real RIFF sizes), once it is made."""
    job = _prepare(request.app, await _json_body(request), "wav")
    runtime: Runtime = request.app.state.runtime
    pieces = [data async for data in pcm(runtime, job)]
    samples = pcm_to_float(b"".join(pieces))
    fmt = job.body.response_format
    encoder = StreamEncoder(fmt)
    try:
        audio = await asyncio.to_thread(lambda: encoder.encode(samples) + encoder.finish())
    finally:
        encoder.close()
    if fmt == "wav":
        audio = _fix_wav_sizes(audio)
    from voxgate_server.audio.encode import CONTENT_TYPES

    headers = {"X-Voxgate-Engine": job.slot.id, "X-Voxgate-Voice": job.voice}
    return Response(audio, media_type=CONTENT_TYPES[fmt], headers=headers)


def _fix_wav_sizes(data: bytes) -> bytes:
    """The streaming encoder writes 0xFFFFFFFF sizes; a whole file can carry the real ones."""
    if len(data) < 44 or data[:4] != b"RIFF":
        return data
    out = bytearray(data)
    out[4:8] = (len(data) - 8).to_bytes(4, "little")
    pos = 12
    while pos + 8 <= len(out):
        chunk, size = bytes(out[pos:pos + 4]), int.from_bytes(out[pos + 4:pos + 8], "little")
        if chunk == b"data":
            out[pos + 4:pos + 8] = (len(out) - pos - 8).to_bytes(4, "little")
            break
        pos += 8 + size + (size & 1)
    return bytes(out)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/v1/tts/stream-sse")
async def stream_sse(request: Request, text: str | None = None, engine: str | None = None,
                     voice: str | None = None, speed: float | None = None, format: str | None = None,
                     language: str | None = None) -> StreamingResponse:
    data: dict[str, Any] = {"text": text if text is not None else None}
    if text is None:
        raise APIError(400, "Missing required parameter: 'text'.", param="text", code="missing_required_parameter")
    for key, value in (("engine", engine), ("voice", voice), ("speed", speed), ("format", format),
                       ("language", language)):
        if value is not None:
            data[key] = value
    job = _prepare(request.app, data, "pcm")
    runtime: Runtime = request.app.state.runtime
    fmt = job.body.response_format
    stream = pcm(runtime, job)
    # the first audio (or the error) before the 200 goes out, as on the OpenAI route
    try:
        first = await anext(stream, b"")
    except Cancelled:
        first = b""

    async def events() -> AsyncIterator[bytes]:
        encoder = None if fmt == "pcm" else StreamEncoder(fmt)
        index = 0
        ok = True

        async def out(raw: bytes) -> AsyncIterator[bytes]:
            nonlocal index
            data = raw if encoder is None else await asyncio.to_thread(encoder.encode, pcm_to_float(raw))
            if data:
                yield _sse("audio", {"chunk": base64.b64encode(data).decode(), "index": index})
                index += 1

        try:
            async for item in out(first):
                yield item
            async for raw in stream:
                async for item in out(raw):
                    yield item
            if encoder is not None:
                tail = await asyncio.to_thread(encoder.finish)
                if tail:
                    yield _sse("audio", {"chunk": base64.b64encode(tail).decode(), "index": index})
                    index += 1
        except APIError as exc:
            ok = False
            yield _sse("error", envelope(exc.message, exc.type, exc.param, exc.code))
        finally:
            if encoder is not None:
                encoder.close()
            job.cancel()
            await stream.aclose()
        if ok:
            yield _sse("metrics", {**job.metrics(), "format": fmt, "sample_rate": 24000, "chunks": index})
            yield _sse("done", {"chunks": index})

    headers = {"X-Accel-Buffering": "no", "Cache-Control": "no-store", "X-Voxgate-Engine": job.slot.id,
               "X-Voxgate-Voice": job.voice}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


class RealtimeTTSSession(Session):
    """The socket of ``/v1/tts/stream``: RealtimeTTS field names, audio as JSON ``audio`` events."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        super().__init__(websocket, runtime)
        self.index = 0

    async def send_bytes(self, data: bytes) -> None:
        if data:
            await self.send_json({"type": "audio", "chunk": base64.b64encode(data).decode(), "index": self.index})
            self.index += 1

    async def handle(self, message: dict[str, Any]) -> None:
        app = self.ws.app
        if message.get("action") == "generate":
            self.index = 0
            message = {"action": "generate", **({"id": message["id"]} if "id" in message else {}),
                       **speech_fields(app, message, "pcm")}
        elif message.get("action") == "append" and self.sentences is None:
            self.index = 0
            text = message.get("text")
            fields = speech_fields(app, {k: v for k, v in message.items() if k != "text"}, "pcm")
            fields.pop("input", None)
            message = {**fields, "action": "append", "text": text}
        try:
            await super().handle(message)
        except APIError as exc:
            raise _renamed(exc) from None


@router.websocket("/v1/tts/stream")
async def stream_ws(websocket: WebSocket) -> None:
    await serve(websocket, RealtimeTTSSession.handle, session_class=RealtimeTTSSession)


# -- engines ---------------------------------------------------------------------------------------

def _engine_info(app: FastAPI, engine_id: str) -> dict[str, Any]:
    runtime: Runtime = app.state.runtime
    slot = runtime.slots.get(engine_id)
    info: dict[str, Any] = {"id": engine_id, "name": engine_id, "loaded": slot is not None,
                            "state": slot.state.value if slot else "available",
                            "default": engine_id == default_engine(app)}
    if slot is not None and slot.state is EngineState.READY:
        caps = slot.engine.capabilities()
        info.update(languages=list(caps.languages), streaming=caps.streaming, cloning=caps.cloning,
                    device=caps.device, current_voice=_state(app).voices.get(engine_id) or slot.engine.default_voice())
    elif slot is not None and slot.error:
        info["error"] = slot.error
    return info


@router.get("/v1/engines")
async def list_engines(request: Request) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    ids = list(runtime.slots) + [e for e in FACTORIES if e not in runtime.slots]
    return {"object": "list", "engines": [_engine_info(request.app, e) for e in ids],
            "current": default_engine(request.app)}


@router.post("/v1/engines/switch")
async def switch_engine(request: Request) -> dict[str, Any]:
    data = await _json_body(request)
    name = data.get("engine") or data.get("engine_name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise APIError(400, "Missing required parameter: 'engine'.", param="engine", code="missing_required_parameter")
    runtime: Runtime = request.app.state.runtime
    if name not in runtime.slots and name not in FACTORIES:
        known = ", ".join(sorted(set(runtime.slots) | set(FACTORIES)))
        raise APIError(404, f"No engine '{name}'. Engines: {known}.", param="engine", code="engine_not_found")
    slot = runtime.slots.get(name)
    if slot is None:
        slot = _add_slot(runtime, name)
        await runtime._load(slot)  # noqa: SLF001 - the same loading path as start-up
    while slot.state is EngineState.LOADING:
        await asyncio.sleep(0.1)
    if slot.state is EngineState.FAILED:
        raise APIError(503, f"Engine '{name}' failed to load: {slot.error}", type="server_error", code="model_failed")
    state = _state(request.app)
    state.engine = name
    await asyncio.to_thread(state.save)
    _point_aliases(runtime, name)
    return {"engine": name, "switched": True, **_engine_info(request.app, name)}


# -- voices ----------------------------------------------------------------------------------------

def _ready_slot(app: FastAPI, engine: str | None) -> EngineSlot:
    runtime: Runtime = app.state.runtime
    return runtime.resolve_model(engine or default_engine(app))


@router.get("/v1/voices")
async def list_voices(request: Request, engine: str | None = None) -> dict[str, Any]:
    slot = _ready_slot(request.app, engine)
    current = _state(request.app).voices.get(slot.id) or slot.engine.default_voice()
    voices = [{"id": v.id, "name": v.name, "language": v.language, "engine": slot.id, "builtin": v.builtin,
               "current": v.id == current} for v in slot.engine.voices()]
    listed = {v["id"] for v in voices}
    for v in library_routes.library_for(request).list():
        if v.id not in listed:  # in the library, but this engine cannot clone from it
            voices.append({"id": v.id, "name": v.name, "language": v.language, "engine": None,
                           "builtin": False, "current": False, "usable": False})
    return {"object": "list", "engine": slot.id, "current": current, "voices": voices}


@router.post("/v1/voices/create", status_code=201)
async def create_voice(request: Request) -> JSONResponse:
    """Multipart ``name``, ``language``, ``audio_file``: a clip for the voice library (cloning engines)."""
    library = library_routes.library_for(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise APIError(415, "Send the voice as multipart/form-data with an 'audio_file' field.",
                       code="unsupported_media_type")
    body = await library_routes._read_limited(request, library.settings.upload_max_bytes  # noqa: SLF001
                                              + library_routes._MULTIPART_OVERHEAD)  # noqa: SLF001
    form = await library_routes._parse_form(request, body)  # noqa: SLF001
    from starlette.datastructures import UploadFile

    try:
        upload = form.get("audio_file")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "Missing required parameter: 'audio_file'.", param="audio_file",
                           code="missing_required_parameter")
        name = library_routes._text_field(form, "name", required=True)  # noqa: SLF001
        language = library_routes._text_field(form, "language", default="en")  # noqa: SLF001
        data = await upload.read()
    finally:
        await form.close()
    from voxgate_server.voice_library import VoiceError

    try:
        voice = await asyncio.to_thread(library.add, name, data, language=language)
    except VoiceError as exc:
        param = "audio_file" if exc.param == "file" else exc.param
        raise APIError(exc.status, exc.message, param=param, code=exc.code) from None
    return JSONResponse({**voice.as_dict(), "voice_id": voice.id}, status_code=201)


@router.delete("/v1/voices/{voice_id}")
async def delete_voice(voice_id: str, request: Request) -> dict[str, Any]:
    if not library_routes.library_for(request).delete(voice_id):
        raise APIError(404, f"No voice '{voice_id}' in the voice library (built-in voices cannot be deleted).",
                       param="voice_id", code="voice_not_found")
    state = _state(request.app)
    if voice_id in state.voices.values():
        state.voices = {e: v for e, v in state.voices.items() if v != voice_id}
        await asyncio.to_thread(state.save)
    return {"id": voice_id, "object": "voice.deleted", "deleted": True}


@router.post("/v1/voices/{voice_id}/set")
async def set_voice(voice_id: str, request: Request, engine: str | None = None) -> dict[str, Any]:
    slot = _ready_slot(request.app, engine)
    runtime: Runtime = request.app.state.runtime
    try:
        resolved = runtime.resolve_voice(slot, voice_id)
    except APIError as exc:
        if library_routes.library_for(request).get(voice_id) is None and exc.code == "invalid_voice":
            raise APIError(404, f"No voice '{voice_id}'.", param="voice_id", code="voice_not_found") from None
        raise APIError(400, f"Engine '{slot.id}' cannot speak with voice '{voice_id}': {exc.message}",
                       param="voice_id", code="invalid_voice") from None
    state = _state(request.app)
    state.voices[slot.id] = resolved
    await asyncio.to_thread(state.save)
    return {"engine": slot.id, "current": resolved, "set": True}
