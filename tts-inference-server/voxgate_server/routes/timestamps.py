"""``POST /v1/audio/speech`` with ``"timestamps": "word"``: audio together with word timings.

- ``stream_format: "audio"``: one JSON object, ``{"audio": base64 of the whole file,
  "response_format", "duration_s", "words": [{"word", "start", "end"}], "usage"}`` (an audio
  body has nowhere to put the words).
- ``stream_format: "sse"``: per chunk, ``speech.audio.timestamps`` ``{"words": [...]}`` and then
  the ``speech.audio.delta`` with its audio; ``speech.audio.done`` at the end.

The same validation, admission and worker threads as the plain route (``speech_job``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from voxgate_server.errors import APIError, envelope
from voxgate_server.runtime import Runtime
from voxgate_server.schemas import SpeechRequest
from voxgate_server.synthesis.speech_job import SpeechJob, admit, awake, prepare
from voxgate_server.timing import timed_stream


async def _run(runtime: Runtime, job: SpeechJob) -> AsyncIterator[tuple[list, bytes]]:
    async with awake(runtime, job.slot):  # a parked engine wakes first, as on the plain route
        async for item in _timed(runtime, job):
            yield item


async def _timed(runtime: Runtime, job: SpeechJob) -> AsyncIterator[tuple[list, bytes]]:
    from voxgate_server.engines.base import Cancelled, InvalidRequest

    admit(runtime, job)
    worker = job.slot.worker
    assert worker is not None
    s = runtime.settings
    produce = lambda: timed_stream(  # noqa: E731 - runs in the worker thread
        job.slot.engine, job.synth, job.body.response_format, stretch=not job.caps.native_speed,
        pause_ms=s.chunk_pause_ms, fade_ms=s.fade_ms, stats=job.stats,
    )
    stream = worker.run(produce, job.synth.cancel)
    status = "200"
    try:
        async for item in stream:
            yield item
    except InvalidRequest as exc:
        status = "400"
        raise APIError(400, exc.message, param=exc.param, code=exc.code or "invalid_value") from None
    except Cancelled:
        status = "499"
        raise
    except Exception as exc:  # noqa: BLE001 - an engine fault is a 500, never a trace
        status = "500"
        raise APIError(500, f"Speech synthesis failed: {exc}", type="server_error", code="engine_error") from None
    finally:
        job.cancel()
        await stream.aclose()
        runtime.metrics.requests.labels(job.slot.id, job.body.response_format, status).inc()
        runtime.metrics.audio_seconds.labels(job.slot.id).inc(job.stats.audio_seconds)


async def timed_speech(request: Request, body: SpeechRequest):  # noqa: ANN201 - JSON or SSE
    runtime: Runtime = request.app.state.runtime
    job = prepare(runtime, body)
    if not job.caps.word_timestamps:
        with_timings = [s.id for s in runtime.slots.values()
                        if s.worker is not None and s.engine.capabilities().word_timestamps]
        raise APIError(400, f"Model '{body.model}' has no word timings (engines with them: "
                            f"{', '.join(with_timings) or 'none'}).", param="timestamps", code="unsupported_value")
    job.synth.options = {**job.synth.options, "timestamps": "word"}  # engines that align on demand (piper)
    headers = {"X-Voxgate-Engine": job.slot.id, "X-Voxgate-Voice": job.voice, "Cache-Control": "no-store"}
    if body.stream_format != "sse":
        words, audio = [], bytearray()
        async for chunk_words, data in _run(runtime, job):
            words.extend(w.as_dict() for w in chunk_words)
            audio += data
        return JSONResponse({"audio": base64.b64encode(bytes(audio)).decode(), "response_format": body.response_format,
                             "duration_s": round(job.stats.audio_seconds, 3), "words": words,
                             "usage": job.usage()}, headers=headers)

    stream = _run(runtime, job)
    first = await anext(stream, None)  # errors before the 200, as on the plain route

    async def events() -> AsyncIterator[bytes]:
        try:
            item = first
            while item is not None:
                words, data = item
                if words:
                    payload = {"type": "speech.audio.timestamps", "words": [w.as_dict() for w in words]}
                    yield f"data: {json.dumps(payload)}\n\n".encode()
                if data:
                    payload = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                    yield f"data: {json.dumps(payload)}\n\n".encode()
                item = await anext(stream, None)
        except APIError as exc:
            yield f"data: {json.dumps({'type': 'error', **envelope(exc.message, exc.type, exc.param, exc.code)})}\n\n".encode()
            return
        finally:
            await stream.aclose()
        done = {"type": "speech.audio.done", "usage": job.usage()}
        yield f"data: {json.dumps(done)}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream", headers={**headers, "X-Accel-Buffering": "no"})
