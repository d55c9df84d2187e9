"""Engine audio to encoded bytes, chunk by chunk, in the engine's worker thread.

Keeping resampling and encoding in the worker thread leaves the event loop free for /health,
/metrics and other requests while speech is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxgate_server.audio.dsp import OUTPUT_RATE, StreamResampler, TimeStretcher, fade_edges
from voxgate_server.audio.encode import StreamEncoder
from voxgate_server.engines.base import AudioChunk, Cancelled, Engine, SynthesisRequest

# What an input with nothing to speak ("." or "—") is answered with: a valid file, never 0 bytes.
SILENCE_MS = 250


@dataclass
class StreamStats:
    """Filled in by the worker thread; read by the route for metrics and SSE usage."""

    started: float = field(default_factory=time.perf_counter)
    first_audio_at: float | None = None
    audio_samples: int = 0
    finished_at: float | None = None

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / OUTPUT_RATE

    @property
    def time_to_first_audio(self) -> float | None:
        return None if self.first_audio_at is None else self.first_audio_at - self.started


def encoded_stream(
    engine: Engine,
    request: SynthesisRequest,
    fmt: str,
    *,
    stretch: bool,
    pause_ms: int,
    fade_ms: float,
    stats: StreamStats,
) -> Iterator[bytes]:
    """Yield encoded audio as the engine makes it: resample to 24 kHz, fade, pause, stretch, encode."""
    for _, data in encoded_chunks(engine, request, fmt, stretch=stretch, pause_ms=pause_ms, fade_ms=fade_ms,
                                  stats=stats):
        yield data


def encoded_chunks(
    engine: Engine,
    request: SynthesisRequest,
    fmt: str,
    *,
    stretch: bool,
    pause_ms: int,
    fade_ms: float,
    stats: StreamStats,
    beside: Callable[[AudioChunk, float], list[Any]] | None = None,
) -> Iterator[tuple[list[Any], bytes]]:
    """``encoded_stream`` with, beside each engine chunk's bytes, what ``beside(chunk, start)``
    says of it (``start``: where the chunk's audio begins, pause included, in engine seconds
    from the first sample): the word timings of ``voxgate_server.timing``. A pair goes out when
    it has bytes or something beside them, so a chunk's words can precede its audio."""
    # One text chunk (one sentence): a WAV answer is held until it is whole, so its header carries
    # the true sizes. Piper's first audio comes at the sentence's end anyway; an engine streaming
    # below the sentence (Chatterbox's fast path) sends a one-sentence WAV at its end (README).
    encoder = StreamEncoder(fmt, whole=len(request.chunks) <= 1)
    resampler = StreamResampler(OUTPUT_RATE)
    stretcher = TimeStretcher(request.speed) if stretch and abs(request.speed - 1.0) > 1e-3 else None
    at_segment_start = True
    emitted_any = False
    engine_seconds = 0.0
    try:
        for chunk in engine.synthesize(request) if request.chunks else ():
            if request.cancel.is_set():
                raise Cancelled()
            # Fade and pause in the engine's own rate, before resampling, so the resampler's
            # delayed tail is already faded and joins stay smooth.
            samples = fade_edges(chunk.samples, chunk.sample_rate, fade_ms, fade_in=at_segment_start, fade_out=chunk.segment_end)
            pause_s = 0.0
            if at_segment_start and emitted_any and pause_ms > 0:
                pause = np.zeros(int(chunk.sample_rate * pause_ms / 1000), dtype=np.float32)
                pause_s = pause.size / chunk.sample_rate
                samples = np.concatenate([pause, samples])
            at_segment_start = chunk.segment_end
            if samples.size:
                emitted_any = True
            extra = beside(chunk, engine_seconds + pause_s) if beside is not None else []
            engine_seconds += samples.size / chunk.sample_rate
            samples = resampler.process(samples, chunk.sample_rate)
            if stretcher is not None:
                samples = stretcher.process(samples)
            data = encoder.encode(samples)
            stats.audio_samples += samples.size
            if data and stats.first_audio_at is None:
                stats.first_audio_at = time.perf_counter()
            if data or extra:
                yield extra, data
        tail = resampler.flush()
        if stretcher is not None:
            tail = stretcher.process(tail) if tail.size else tail
            tail = np.concatenate([tail, stretcher.flush()])
        if stats.audio_samples + tail.size == 0:
            tail = np.zeros(OUTPUT_RATE * SILENCE_MS // 1000, dtype=np.float32)
        data = encoder.encode(tail) + encoder.finish()
        stats.audio_samples += tail.size
        if data:
            if stats.first_audio_at is None:
                stats.first_audio_at = time.perf_counter()
            yield [], data
    finally:
        encoder.close()
        stats.finished_at = time.perf_counter()
