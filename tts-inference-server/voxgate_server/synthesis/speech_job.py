"""One speech request as every non-HTTP-body surface runs it (WebSocket, RealtimeTTS routes).

The same steps and errors as ``POST /v1/audio/speech``: pydantic validation of the same
``SpeechRequest``, the input limits, the model, format, voice and option checks, sentence
chunking, admission (429 when the queue is full) and the engine's worker thread. The audio comes
back as 24 kHz 16-bit PCM after speed, fades and pauses (``encoded_stream`` with ``pcm``), so a
surface can encode it into any format, or keep one encoder open across several jobs (the
WebSocket's incremental text).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from voxgate_server.engines.base import EngineCapabilities, InvalidRequest, SynthesisRequest
from voxgate_server.errors import APIError, validation_error
from voxgate_server.runtime import EngineSlot, Runtime
from voxgate_server.schemas import SpeechRequest
from voxgate_server.speakable import clean_input, has_speech
from voxgate_server.synthesis.parking import EnginePark
from voxgate_server.synthesis.pipeline import StreamStats, encoded_stream
from voxgate_server.synthesis.scheduler import QueueFull
from voxgate_server.text import chunk_text


def validate_body(runtime: Runtime, data: Any) -> SpeechRequest:
    """The JSON object of a request as a ``SpeechRequest``, or an ``APIError`` (400)."""
    if not isinstance(data, dict):
        raise APIError(400, "The request must be a JSON object.", code="invalid_json")
    try:
        body = SpeechRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if not body.input.strip():
        raise APIError(400, "'input' must be a non-empty string.", param="input", code="invalid_value")
    limit = runtime.settings.max_input_chars
    if len(body.input) > limit:
        raise APIError(400, f"'input' is {len(body.input)} characters long; the maximum is {limit}.",
                       param="input", code="string_above_max_length")
    return body


@dataclass
class SpeechJob:
    body: SpeechRequest
    slot: EngineSlot
    caps: EngineCapabilities
    voice: str
    synth: SynthesisRequest
    stats: StreamStats = field(default_factory=StreamStats)

    def cancel(self) -> None:
        self.synth.cancel.set()

    def usage(self) -> dict[str, int]:
        """The same estimates as the SSE route (README): ~4 characters a token, 25 audio tokens a second."""
        input_tokens = max(1, math.ceil(len(self.body.input) / 4))
        output_tokens = math.ceil(self.stats.audio_seconds * 25)
        return {"input_tokens": input_tokens, "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens}

    def metrics(self) -> dict[str, Any]:
        s = self.stats
        elapsed = (s.finished_at or time.perf_counter()) - s.started
        ttfa = s.time_to_first_audio
        return {
            "model": self.slot.id,
            "voice": self.voice,
            "time_to_first_audio_s": None if ttfa is None else round(ttfa, 4),
            "synthesis_seconds": round(elapsed, 4),
            "audio_seconds": round(s.audio_seconds, 4),
            "rtf": round(elapsed / s.audio_seconds, 4) if s.audio_seconds else None,
            "usage": self.usage(),
        }


def prepare(runtime: Runtime, body: SpeechRequest) -> SpeechJob:
    """Resolve and check everything before any audio is made; raises ``APIError``."""
    slot = runtime.resolve_model(body.model)
    engine = slot.engine
    caps = engine.capabilities()
    if body.response_format not in caps.formats:
        raise APIError(400, f"Model '{body.model}' cannot produce '{body.response_format}'.",
                       param="response_format", code="unsupported_format")
    voice = runtime.resolve_voice(slot, body.voice_id)
    try:
        options = engine.validate_options(body.generation_options())
    except InvalidRequest as exc:
        raise APIError(400, exc.message, param=exc.param, code=exc.code or "invalid_value") from None
    if len(body.input) > caps.max_input_chars:
        raise APIError(400, f"Model '{body.model}' accepts at most {caps.max_input_chars} characters.",
                       param="input", code="string_above_max_length")
    text = clean_input(body.input)
    # Nothing to speak ("." or "—"): no engine call, the pipeline answers with a short silence.
    chunks = chunk_text(text, caps.max_chunk_chars) if has_speech(text) else []
    synth = SynthesisRequest(chunks=chunks, voice=voice, speed=body.speed, instructions=body.instructions,
                             options=options)
    return SpeechJob(body=body, slot=slot, caps=caps, voice=voice, synth=synth)


def admit(runtime: Runtime, job: SpeechJob) -> None:
    worker = job.slot.worker
    assert worker is not None
    try:
        worker.admit()
    except QueueFull as exc:
        runtime.metrics.requests.labels(job.slot.id, job.body.response_format, "429").inc()
        raise APIError(429, f"Model '{job.body.model}' is busy: every worker is in use and the queue is full.",
                       code="queue_full", headers={"Retry-After": str(exc.retry_after_s)}) from None


@contextlib.asynccontextmanager
async def awake(runtime: Runtime, slot: EngineSlot) -> AsyncIterator[None]:
    """Hold the job at the engine's park gate (waking a parked engine), as the plain speech route
    does, so a WebSocket, RealtimeTTS or timed request to a parked server is served after the wake
    instead of reaching an engine whose memory is gone."""
    gate = await enter_gate(runtime, slot)
    try:
        yield
    finally:
        if gate is not None:
            gate.leave()


async def enter_gate(runtime: Runtime, slot: EngineSlot) -> EnginePark | None:
    """Wait at the engine's park gate (a parked engine is woken); the caller leaves the gate it
    gets back once its answer is done. A failed wake is a 503 with Retry-After."""
    gate = slot.park
    if gate is None:
        return None
    from voxgate_server.engines.base import EngineError

    try:
        await gate.enter()
    except EngineError as exc:
        raise APIError(503, str(exc), type="server_error", code="wake_failed",
                       headers={"Retry-After": str(runtime.settings.retry_after_s)}) from None
    return gate


async def pcm(runtime: Runtime, job: SpeechJob) -> AsyncIterator[bytes]:
    """Admit and run the job; yield 24 kHz s16le PCM as the engine makes it.

    Engine faults surface as ``APIError`` (400 for ``InvalidRequest``, 500 otherwise); a stopped
    job ends with ``Cancelled``. The worker slot is free once this generator has finished.
    """
    async with awake(runtime, job.slot):
        async for data in _pcm(runtime, job):
            yield data


async def _pcm(runtime: Runtime, job: SpeechJob) -> AsyncIterator[bytes]:
    admit(runtime, job)
    worker = job.slot.worker
    assert worker is not None
    s = runtime.settings
    produce = lambda: encoded_stream(  # noqa: E731 - runs in the worker thread
        job.slot.engine, job.synth, "pcm", stretch=not job.caps.native_speed,
        pause_ms=s.chunk_pause_ms, fade_ms=s.fade_ms, stats=job.stats,
    )
    status = "200"
    stream = worker.run(produce, job.synth.cancel)
    try:
        async for data in stream:
            yield data
    except InvalidRequest as exc:
        status = "400"
        raise APIError(400, exc.message, param=exc.param, code=exc.code or "invalid_value") from None
    except APIError:
        raise
    except Exception as exc:  # noqa: BLE001 - Cancelled and engine faults
        from voxgate_server.engines.base import Cancelled

        if isinstance(exc, Cancelled):
            status = "499"
            raise
        status = "500"
        raise APIError(500, f"Speech synthesis failed: {exc}", type="server_error", code="engine_error") from None
    finally:
        job.cancel()
        await stream.aclose()
        m = runtime.metrics
        m.requests.labels(job.slot.id, job.body.response_format, status).inc()
        m.audio_seconds.labels(job.slot.id).inc(job.stats.audio_seconds)


def pcm_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0
