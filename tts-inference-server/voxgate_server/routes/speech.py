"""POST /v1/audio/speech: validate, admit, stream encoded audio (raw or SSE) as it is made."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from voxgate_server.asgi.json_body import parse_json_object
from voxgate_server.audio.encode import CONTENT_TYPES
from voxgate_server.engines.base import Cancelled, EngineError, InvalidRequest, SynthesisRequest
from voxgate_server.errors import APIError
from voxgate_server.runtime import Runtime
from voxgate_server.schemas import SpeechRequest
from voxgate_server.synthesis.pipeline import StreamStats, encoded_stream
from voxgate_server.synthesis.scheduler import QueueFull, ShuttingDown
from voxgate_server.synthesis.speech_job import enter_gate, prepare, validate_body

router = APIRouter()


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 as soon as the body (declared or streamed) is larger."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body too large: {declared} bytes, the limit is {limit}.", code="request_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")
    return bytes(body)


async def parse_speech_request(request: Request, runtime: Runtime) -> SpeechRequest:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(415, f"Unsupported content type '{content_type or 'none'}': send application/json.",
                       code="unsupported_media_type")
    return validate_body(runtime, parse_json_object(await read_body(request, runtime.settings.max_body_bytes)))


def _shutting_down(runtime: Runtime) -> APIError:
    return APIError(503, "The server is shutting down; retry on another instance or shortly.", code="shutting_down",
                    type="service_unavailable", headers={"Retry-After": str(runtime.settings.retry_after_s)})


def _usage(body: SpeechRequest, stats: StreamStats) -> dict[str, int]:
    # Estimates, documented in README: ~4 characters a text token, 25 audio tokens a second.
    input_tokens = max(1, math.ceil(len(body.input) / 4))
    output_tokens = math.ceil(stats.audio_seconds * 25)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


async def _first_or_disconnect(request: Request, stream: AsyncIterator[bytes]) -> bytes | None:
    """Wait for the first audio, but give up (and free the place) if the client leaves."""
    first = asyncio.ensure_future(anext(stream, b""))

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({first, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if first in done:
        return first.result()
    first.cancel()
    try:
        await first
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the client is gone either way
        pass
    return None


@router.post("/v1/audio/speech")
async def create_speech(request: Request):  # noqa: ANN201 - StreamingResponse or error
    runtime: Runtime = request.app.state.runtime
    body = await parse_speech_request(request, runtime)
    if body.timestamps == "word":
        from voxgate_server.routes.timestamps import timed_speech

        return await timed_speech(request, body)
    job = prepare(runtime, body)  # the same checks as every other door (speech_job)
    gate = await enter_gate(runtime, job.slot)  # parked (or parking, waking): held here, served after the wake
    try:
        return await _speak(request, runtime, job.slot, body, job.caps, job.voice, job.synth)
    except BaseException:
        if gate is not None:
            gate.leave()
        raise


async def _speak(request: Request, runtime: Runtime, slot, body: SpeechRequest, caps, voice: str,  # noqa: ANN001
                 synth: SynthesisRequest):  # noqa: ANN202 - the response, or an APIError raised
    """Everything after the park gate; the response's end (or an error here) leaves the gate."""
    metrics = runtime.metrics
    engine = slot.engine
    worker = slot.worker
    gate = slot.park
    try:
        worker.admit()
    except ShuttingDown:
        raise _shutting_down(runtime) from None
    except QueueFull as exc:
        metrics.requests.labels(slot.id, body.response_format, "429").inc()
        raise APIError(429, f"Model '{body.model}' is busy: every worker is in use and the queue is full.",
                       code="queue_full", headers={"Retry-After": str(exc.retry_after_s)}) from None

    settings = runtime.settings
    stats = StreamStats()
    produce = lambda: encoded_stream(  # noqa: E731 - runs in the worker thread
        engine, synth, body.response_format, stretch=not caps.native_speed,
        pause_ms=settings.chunk_pause_ms, fade_ms=settings.fade_ms, stats=stats,
    )
    metrics.queue_depth.labels(slot.id).set(worker.queue_depth + 1)
    stream = worker.run(produce, synth.cancel)
    status = "200"
    try:
        first = await _first_or_disconnect(request, stream)
    except InvalidRequest as exc:
        status = "400"
        raise APIError(400, exc.message, param=exc.param, code=exc.code or "invalid_value") from None
    except ShuttingDown:
        status = "503"
        raise _shutting_down(runtime) from None
    except Cancelled:
        if not runtime.shutting_down:
            status = "500"
            raise APIError(500, "Speech synthesis was cancelled.", type="server_error", code="engine_error") from None
        status = "503"
        raise _shutting_down(runtime) from None
    except (EngineError, Exception) as exc:  # noqa: BLE001 - an engine fault is a 500, never a trace
        status = "500"
        raise APIError(500, f"Speech synthesis failed: {exc}", type="server_error", code="engine_error") from None
    finally:
        metrics.queue_depth.labels(slot.id).set(worker.queue_depth)
        if status != "200":
            synth.cancel.set()
            metrics.requests.labels(slot.id, body.response_format, status).inc()
    if not first and runtime.shutting_down:
        metrics.requests.labels(slot.id, body.response_format, "503").inc()
        raise _shutting_down(runtime)
    if first is None:
        synth.cancel.set()
        metrics.requests.labels(slot.id, body.response_format, "499").inc()
        await stream.aclose()
        if gate is not None:
            gate.leave()
        return StreamingResponse(iter(()), status_code=499)
    metrics.active.labels(slot.id).set(worker.active)
    if stats.time_to_first_audio is not None:
        metrics.ttfa.labels(slot.id).observe(stats.time_to_first_audio)

    outcome = "200"

    async def audio() -> AsyncIterator[bytes]:
        nonlocal outcome
        try:
            yield first
            async for data in stream:
                yield data
            if synth.cancel.is_set() and runtime.shutting_down:
                outcome = "503"  # the worker stopped at a chunk boundary
        except Cancelled:
            if runtime.shutting_down:  # stopped by SIGTERM after the grace time: end the stream
                outcome = "503"
                return
            outcome = "499"
            raise
        except asyncio.CancelledError:
            outcome = "499"
            raise
        except Exception:  # noqa: BLE001 - mid-stream failure: end the stream, count it
            outcome = "500"
            metrics.errors.labels("engine_error").inc()
            return
        finally:
            synth.cancel.set()
            await stream.aclose()
            if gate is not None:
                gate.leave()
            metrics.requests.labels(slot.id, body.response_format, outcome).inc()
            metrics.synthesis_seconds.labels(slot.id).observe(time.perf_counter() - stats.started)
            metrics.audio_seconds.labels(slot.id).inc(stats.audio_seconds)
            metrics.active.labels(slot.id).set(worker.active)

    headers = {"X-Accel-Buffering": "no", "Cache-Control": "no-store", "X-Voxgate-Engine": slot.id, "X-Voxgate-Voice": voice}
    if body.instructions and not caps.instructions:
        headers["X-Voxgate-Ignored"] = "instructions"
    if body.stream_format == "sse":
        async def events() -> AsyncIterator[bytes]:
            async for data in audio():
                payload = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                yield f"data: {json.dumps(payload)}\n\n".encode()
            if outcome != "200":  # the engine failed mid-stream: no "done", as OpenAI would not send one
                stopped = outcome == "503"
                error = {"type": "error", "error": {
                    "message": "The server is shutting down; the audio ends here." if stopped
                    else "Speech synthesis failed mid-stream.",
                    "type": "server_error", "param": None, "code": "shutting_down" if stopped else "engine_error"}}
                yield f"data: {json.dumps(error)}\n\n".encode()
                return
            done = {"type": "speech.audio.done", "usage": _usage(body, stats)}
            yield f"data: {json.dumps(done)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
    return StreamingResponse(audio(), media_type=CONTENT_TYPES[body.response_format], headers=headers)
