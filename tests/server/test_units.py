"""Unit tests of the pieces between engine and client: text chunks, joins, speed, settings, queue."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voxgate_server.audio.dsp import TimeStretcher, fade_edges
from voxgate_server.engines.base import AudioChunk, Engine, EngineCapabilities, SynthesisRequest, VoiceInfo
from voxgate_server.settings import Settings
from voxgate_server.synthesis.pipeline import StreamStats, encoded_stream
from voxgate_server.synthesis.scheduler import EngineWorker, QueueFull
from voxgate_server.text import chunk_text, split_sentences


def test_sentences_and_chunks():
    text = "Dr. Smith went to Washington. He said hello! Then he left... It cost $3.50, ok? Yes."
    assert split_sentences(text)[0] == "Dr. Smith went to Washington."
    chunks = chunk_text(text, 40)
    assert chunks[0] == "Dr. Smith went to Washington."
    assert all(len(c) <= 40 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_long_sentence_is_cut_at_clause_or_space_never_mid_word():
    sentence = ("word " * 200).strip() + ", and then some more words to end it."
    chunks = chunk_text(sentence, 300)
    assert all(len(c) <= 300 for c in chunks)
    assert " ".join(chunks).split() == sentence.split()


def test_tags_survive_chunking():
    chunks = chunk_text("Hello there [laugh] that was funny. [sigh] Anyway.", 300)
    joined = " ".join(chunks)
    assert "[laugh]" in joined and "[sigh]" in joined


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_time_stretch_ratio(speed):
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 24000)).astype(np.float32)
    ts = TimeStretcher(speed)
    y = np.concatenate([ts.process(x[i:i + 4800]) for i in range(0, x.size, 4800)] + [ts.flush()])
    assert abs(y.size / x.size * speed - 1) < 0.02


class ToneEngine(Engine):
    """A signal generator for testing the pipeline's joins (not a speech model)."""

    id = "tone"

    def load(self) -> None: ...

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(sample_rate=22050)

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("a", "a")]

    def synthesize(self, request: SynthesisRequest):
        t = np.arange(11025) / 22050
        for _ in request.chunks:  # every segment stops at full amplitude: a click if not faded
            yield AudioChunk((0.8 * np.cos(2 * np.pi * 440 * t)).astype(np.float32), 22050, segment_end=True)


def test_joins_have_no_step():
    request = SynthesisRequest(chunks=["a", "b", "c"], voice="a")
    stats = StreamStats()
    pcm = b"".join(encoded_stream(ToneEngine(), request, "pcm", stretch=False, pause_ms=100, fade_ms=6, stats=stats))
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    # A 440 Hz tone at 0.8 changes by at most 2*pi*440/24000*0.8 ~ 0.09 per sample; a cut is a jump of ~0.8.
    assert np.abs(np.diff(x)).max() < 0.12
    silent = np.abs(x) < 1e-4
    assert silent.sum() >= 2 * 0.1 * 24000 * 0.9  # two pauses of 100 ms
    assert stats.audio_seconds == pytest.approx(x.size / 24000)


def test_fade_edges_shape():
    x = np.ones(1000, dtype=np.float32)
    y = fade_edges(x, 24000, 5, fade_in=True, fade_out=True)
    assert y[0] == 0 and y[-1] == 0 and y[500] == 1


async def test_worker_admission_and_cancel():
    worker = EngineWorker("t", concurrency=1, queue_size=1, retry_after_s=1)
    gate = threading.Event()
    cancel_a = threading.Event()

    def slow():
        yield b"first"
        gate.wait(5)
        yield b"second"

    stream_a = worker.run(slow, cancel_a)
    assert await anext(stream_a) == b"first"
    assert worker.active == 1
    stream_b = worker.run(lambda: iter([b"b"]), threading.Event())
    task_b = asyncio.ensure_future(anext(stream_b))
    await asyncio.sleep(0.05)
    assert worker.waiting == 1
    with pytest.raises(QueueFull):
        worker.admit()
    task_b.cancel()  # the waiting client leaves: its place is given back
    with pytest.raises(asyncio.CancelledError):
        await task_b
    assert worker.waiting == 0
    await stream_a.aclose()
    assert cancel_a.is_set()
    gate.set()
    for _ in range(50):
        if worker.active == 0:
            break
        await asyncio.sleep(0.02)
    assert worker.active == 0
    worker.shutdown()


async def test_worker_threads_start_ahead_and_serve_requests():
    def threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("engine-ahead")]

    worker = EngineWorker("ahead", concurrency=3, queue_size=0, retry_after_s=1)
    assert threads() == []  # a ThreadPoolExecutor starts its threads on demand
    worker.start_threads()
    started = threads()
    assert len(started) == 3
    names = set()

    def produce():
        names.add(threading.current_thread().name)
        yield b"x"

    for _ in range(2):
        assert [item async for item in worker.run(produce, threading.Event())] == [b"x"]
    assert names <= {t.name for t in started}  # the requests ran on those threads, no new ones
    assert len(threads()) == 3
    worker.shutdown()


def test_settings_parse_lists_and_maps(monkeypatch):
    monkeypatch.setenv("VOXGATE_API_KEYS", "a, b")
    monkeypatch.setenv("VOXGATE_MODEL_ALIASES", "fast=piper,tts-1-hd=piper")
    monkeypatch.setenv("VOXGATE_VOICE_MAP", '{"piper": {"alloy": "joe"}}')
    s = Settings()
    assert s.api_keys == ["a", "b"]
    assert s.aliases["fast"] == "piper" and s.aliases["tts-1"] == "piper"
    assert s.voice_map == {"piper": {"alloy": "joe"}}
