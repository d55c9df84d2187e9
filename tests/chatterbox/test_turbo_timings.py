"""``"timestamps": "word"`` on the Chatterbox engines, on their random-weight checkpoints: the words
come back in order, cover the audio, scale with ``speed``, and (SSE) each sentence's words go out
before its audio. Through the real server for Turbo's upstream path; in-process for Multilingual (the
fast path's test is in test_fast_engine.py, on its engine). The random checkpoints speak noise, so where the words fall inside a
clip says nothing here: bench/service/word_timing_bench.py measures that on real speech."""

from __future__ import annotations

import base64
import gc
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from sse_client import sse_events
from turbo_helpers import ServerProcess, decode

TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


def text_words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


@pytest.fixture(scope="module")
def server(turbo_ckpt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    work = tmp_path_factory.mktemp("turbo_timings")
    proc = ServerProcess({
        "VOXGATE_ENGINES": "chatterbox-turbo",
        "VOXGATE_VOICES_DIR": str(work / "voices"),
        "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": str(turbo_ckpt["dir"]),
        # 15 tokens (0.6 s) and the 3 silence tokens a sentence: long enough to place 8 words
        "VOXGATE_CHATTERBOX_CHUNK_MAX_DURATION_S": "0.6",
        "VOXGATE_CHATTERBOX_MAX_DURATION_S": "4",
        "VOXGATE_CHATTERBOX_WARMUP": "false",
        "HF_HUB_OFFLINE": "1",
    }, work / "server.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def timed(server: ServerProcess, speed: float = 1.0, fmt: str = "wav") -> tuple[dict, object]:
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=300,
                   json={"model": "chatterbox-turbo", "voice": "alloy", "input": TEXT, "response_format": fmt,
                         "timestamps": "word", "speed": speed, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    samples, rate = decode(base64.b64decode(body["audio"]))
    return body, samples.size / rate


def check_order_and_cover(words: list[dict], duration: float) -> None:
    assert [w["word"] for w in words] == text_words(TEXT)
    previous_end = 0.0
    for w in words:
        assert previous_end - 1e-3 <= w["start"] < w["end"], words
        previous_end = w["end"]
    assert abs(words[-1]["end"] - duration) <= 0.3, (words[-1], duration)


def test_models_say_turbo_has_word_timings(server: ServerProcess) -> None:
    caps = httpx.get(f"{server.url}/v1/models/chatterbox-turbo").json()["capabilities"]
    assert caps["word_timestamps"] is True


def test_words_are_in_order_cover_the_audio_and_scale_with_speed(server: ServerProcess) -> None:
    slow, slow_s = timed(server, 1.0)
    check_order_and_cover(slow["words"], slow_s)
    assert abs(slow["duration_s"] - slow_s) < 0.05
    fast, fast_s = timed(server, 2.0)
    check_order_and_cover(fast["words"], fast_s)
    for a, b in zip(slow["words"], fast["words"]):  # the same seed, the same clip, twice as fast
        assert abs(b["start"] - a["start"] / 2) <= 0.05 and abs(b["end"] - a["end"] / 2) <= 0.05, (a, b)
    # the second sentence starts after the first one's clip and the server's pause
    glue = [w["word"] for w in slow["words"]].index("Glue")
    assert slow["words"][glue]["start"] >= slow["words"][glue - 1]["end"]
    assert slow["words"][glue]["start"] > 0.6


def test_sse_sends_each_sentences_words_before_its_audio(server: ServerProcess) -> None:
    events = sse_events(f"{server.url}/v1/audio/speech", timeout=300,
                        body={"model": "chatterbox-turbo", "voice": "alloy", "input": TEXT, "response_format": "pcm",
                              "stream_format": "sse", "timestamps": "word", "seed": 3})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech.audio.timestamps" and kinds[-1] == "speech.audio.done"
    assert kinds.count("speech.audio.timestamps") == 2  # one per sentence
    assert "speech.audio.delta" in kinds[1:kinds.index("speech.audio.timestamps", 1)]
    words = [w for e in events if e["type"] == "speech.audio.timestamps" for w in e["words"]]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    check_order_and_cover(words, len(pcm) / 2 / 24000)


def test_multilingual_gives_words_in_its_languages(mtl_ckpt: dict[str, Path],
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from voxgate_server.engines.base import SynthesisRequest
    from voxgate_server.engines.chatterbox_multilingual.engine import ChatterboxMultilingualEngine
    from voxgate_server.engines.chatterbox_multilingual.settings import MultilingualSettings
    from voxgate_server.settings import Settings

    eng = ChatterboxMultilingualEngine(
        Settings(voices_dir=tmp_path_factory.mktemp("timed_mtl_voices")),
        MultilingualSettings(checkpoint_dir=mtl_ckpt["dir"], device="cpu", warmup=False,
                             max_duration_s=0.2, chunk_max_duration_s=0.2),
    )
    eng.load()
    try:
        assert eng.capabilities().word_timestamps is True
        request = SynthesisRequest(chunks=["Bonjour à tous, ça va bien?"], voice="default",
                                   options=eng.validate_options({"language": "fr", "seed": 2}) | {"timestamps": "word"})
        chunks = list(eng.synthesize(request))
        words = [w for c in chunks for w in (c.words or [])]
        assert [w for w, _, _ in words] == ["Bonjour", "à", "tous", "ça", "va", "bien"]
        duration = sum(c.samples.size for c in chunks) / 24000
        assert all(s < e for _, s, e in words) and abs(words[-1][2] - duration) <= 0.3
    finally:
        eng.close()
        del eng
        gc.collect()


def test_a_random_clip_still_gets_every_word() -> None:
    """Whatever the clip (a random checkpoint's noise, near silence), the words all come back."""
    from voxgate_server.engines.chatterbox_turbo.word_timing import word_times

    rng = np.random.default_rng(0)
    for scale in (0.3, 1e-4):
        noise = (rng.standard_normal(24000) * scale).astype(np.float32)
        assert [w for w, _, _ in word_times(TEXT, noise, 24000)] == text_words(TEXT)

