"""Word timings in the output's time base, for ``"timestamps": "word"``.

Engines that can (``capabilities().word_timestamps``) attach ``words`` to their AudioChunks:
(word, start, end) in seconds from the chunk's first sample, at the engine's own pace. Here they
are moved to where the chunk lands in the output: after the pauses the server inserts between
text chunks, and divided by ``speed`` when the server time-stretches (Piper); an engine with
native speed (Kokoro) already reports stretched durations.

``timed_stream`` is ``pipeline.encoded_stream`` with the words carried beside the bytes, so an
SSE event with a chunk's words can go out before that chunk's audio.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from voxgate_server.audio.dsp import OUTPUT_RATE, StreamResampler, TimeStretcher, fade_edges
from voxgate_server.audio.encode import StreamEncoder
from voxgate_server.engines.base import Cancelled, Engine, SynthesisRequest
from voxgate_server.pipeline import StreamStats


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float

    def as_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


class Timeline:
    """Where each chunk starts in the output, in engine seconds; output = engine time / factor."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.engine_seconds = 0.0
        self.last_end = 0.0

    def place(self, words: list[tuple[str, float, float]], offset: float) -> list[Word]:
        out = []
        for word, start, end in words:
            s = max((offset + start) / self.factor, self.last_end)
            e = max((offset + end) / self.factor, s)
            out.append(Word(word, s, e))
            self.last_end = e
        return out


def timed_stream(
    engine: Engine,
    request: SynthesisRequest,
    fmt: str,
    *,
    stretch: bool,
    pause_ms: int,
    fade_ms: float,
    stats: StreamStats,
) -> Iterator[tuple[list[Word], bytes]]:
    """(words, encoded bytes) per engine chunk, the words in output seconds."""
    encoder = StreamEncoder(fmt)
    resampler = StreamResampler(OUTPUT_RATE)
    stretched = stretch and abs(request.speed - 1.0) > 1e-3
    stretcher = TimeStretcher(request.speed) if stretched else None
    timeline = Timeline(request.speed if stretched else 1.0)
    at_segment_start = True
    emitted_any = False
    try:
        for chunk in engine.synthesize(request):
            if request.cancel.is_set():
                raise Cancelled()
            samples = fade_edges(chunk.samples, chunk.sample_rate, fade_ms, fade_in=at_segment_start,
                                 fade_out=chunk.segment_end)
            pause_s = 0.0
            if at_segment_start and emitted_any and pause_ms > 0:
                pause = np.zeros(int(chunk.sample_rate * pause_ms / 1000), dtype=np.float32)
                pause_s = pause.size / chunk.sample_rate
                samples = np.concatenate([pause, samples])
            at_segment_start = chunk.segment_end
            if samples.size:
                emitted_any = True
            words = timeline.place(list(chunk.words or []), timeline.engine_seconds + pause_s)
            timeline.engine_seconds += samples.size / chunk.sample_rate
            samples = resampler.process(samples, chunk.sample_rate)
            if stretcher is not None:
                samples = stretcher.process(samples)
            data = encoder.encode(samples)
            stats.audio_samples += samples.size
            if data and stats.first_audio_at is None:
                stats.first_audio_at = time.perf_counter()
            if data or words:
                yield words, data
        tail = resampler.flush()
        if stretcher is not None:
            tail = stretcher.process(tail) if tail.size else tail
            tail = np.concatenate([tail, stretcher.flush()])
        data = encoder.encode(tail) + encoder.finish()
        stats.audio_samples += tail.size
        if data:
            if stats.first_audio_at is None:
                stats.first_audio_at = time.perf_counter()
            yield [], data
    finally:
        encoder.close()
        stats.finished_at = time.perf_counter()
