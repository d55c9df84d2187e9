"""Word timings in the output's time base, for ``"timestamps": "word"``.

Engines that can (``capabilities().word_timestamps``) attach ``words`` to their AudioChunks:
(word, start, end) in seconds from the chunk's first sample, at the engine's own pace. Here they
are moved to where the chunk lands in the output: after the pauses the server inserts between
text chunks, and divided by ``speed`` when the server time-stretches (Piper); an engine with
native speed (Kokoro) already reports stretched durations.

``timed_stream`` is ``pipeline.encoded_chunks`` (the plain route's stream) with the words carried
beside the bytes, so an SSE event with a chunk's words can go out before that chunk's audio.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from voxgate_server.engines.base import Engine, SynthesisRequest
from voxgate_server.synthesis.pipeline import StreamStats, encoded_chunks


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float

    def as_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


class Timeline:
    """Engine-time words to output time (engine time / factor), never before the last word's end."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
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
    stretched = stretch and abs(request.speed - 1.0) > 1e-3
    timeline = Timeline(request.speed if stretched else 1.0)
    return encoded_chunks(engine, request, fmt, stretch=stretch, pause_ms=pause_ms, fade_ms=fade_ms, stats=stats,
                          beside=lambda chunk, start: timeline.place(list(chunk.words or []), start))
