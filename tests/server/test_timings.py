"""``"timestamps": "word"`` on Piper (phoneme alignment) and Kokoro (predicted durations): the
words come back in order, cover the audio, scale with speed, and sit on speech, not silence."""

from __future__ import annotations

import base64
import re
import time

import httpx
import numpy as np
import pytest

from audio_check import decode
from sse_client import sse_events

TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def timed_server(tmp_path_factory, server_factory):
    cache = tmp_path_factory.mktemp("kokoro-cache")
    proc = server_factory({"VOXGATE_ENGINES": "piper,kokoro", "KOKORO_JA_CACHE": str(cache),
                           "VOXGATE_PIPER_NOISE_SCALE": "0", "VOXGATE_PIPER_NOISE_W_SCALE": "0"})
    deadline = time.monotonic() + 180
    while any(e["state"] != "ready" for e in httpx.get(f"{proc.url}/health").json()["engines"].values()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    yield proc
    proc.stop()


def timed(server, model, speed=1.0, fmt="wav"):
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=180,
                   json={"model": model, "voice": "alloy", "input": TEXT, "response_format": fmt,
                         "timestamps": "word", "speed": speed})
    assert r.status_code == 200, r.text
    body = r.json()
    return body, decode(base64.b64decode(body["audio"]), fmt)


def text_words(text):
    return re.findall(r"[A-Za-z']+", text)


def test_models_say_which_engines_have_word_timings(timed_server):
    data = {m["id"]: m for m in httpx.get(f"{timed_server.url}/v1/models").json()["data"]}
    assert data["piper"]["capabilities"]["word_timestamps"] is True
    assert data["kokoro"]["capabilities"]["word_timestamps"] is True


@pytest.mark.parametrize("model", ["piper", "kokoro"])
def test_words_are_in_order_and_cover_the_audio(timed_server, model):
    body, audio = timed(timed_server, model)
    words = body["words"]
    assert [w["word"] for w in words] == text_words(TEXT)
    previous_end = 0.0
    for w in words:
        assert previous_end - 1e-3 <= w["start"] <= w["end"], words
        previous_end = w["end"]
    assert abs(words[-1]["end"] - audio.duration) <= 0.3, (words[-1], audio.duration)
    assert abs(body["duration_s"] - audio.duration) < 0.05


@pytest.mark.parametrize("model", ["piper", "kokoro"])
def test_timings_scale_with_speed(timed_server, model):
    slow, slow_audio = timed(timed_server, model, 1.0)
    fast, fast_audio = timed(timed_server, model, 2.0)
    ratio = fast["words"][-1]["end"] / slow["words"][-1]["end"]
    assert 0.42 <= ratio <= 0.58, ratio
    assert abs(fast["words"][-1]["end"] - fast_audio.duration) <= 0.3
    # word by word too: "Glue" (after the pause between the sentences) moves to about half its time
    glue = [w["word"] for w in slow["words"]].index("Glue")
    assert 0.4 <= fast["words"][glue]["start"] / slow["words"][glue]["start"] <= 0.6


@pytest.mark.parametrize("model", ["piper", "kokoro"])
@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_word_spans_hold_speech_and_the_gap_between_sentences_does_not(timed_server, model, speed):
    body, audio = timed(timed_server, model, speed)
    x, rate = audio.samples, audio.sample_rate

    def rms(start, end):
        seg = x[int(start * rate): max(int(end * rate), int(start * rate) + 1)]
        return float(np.sqrt(np.mean(seg ** 2)))

    words = body["words"]
    for w in words:
        assert rms(w["start"], w["end"]) > 0.008, (w, rms(w["start"], w["end"]))
    # the pause between the two sentences: the widest gap, silent in its middle
    gaps = [(words[i + 1]["start"] - words[i]["end"], words[i]["end"], words[i + 1]["start"])
            for i in range(len(words) - 1)]
    width, start, end = max(gaps)
    assert width > 0.05, gaps
    quarter = width / 4
    silence = rms(start + quarter, end - quarter)
    assert silence < 0.004, (silence, start, end)
    assert min(rms(w["start"], w["end"]) for w in words) > 3 * silence


@pytest.mark.parametrize("model", ["piper", "kokoro"])
def test_sse_sends_each_chunks_words_before_its_audio(timed_server, model):
    events = sse_events(f"{timed_server.url}/v1/audio/speech", timeout=180,
                        body={"model": model, "voice": "alloy", "input": TEXT, "response_format": "mp3",
                              "stream_format": "sse", "timestamps": "word"})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech.audio.timestamps" and kinds[-1] == "speech.audio.done"
    assert kinds.count("speech.audio.timestamps") == 2  # one per sentence
    second = kinds.index("speech.audio.timestamps", 1)
    assert "speech.audio.delta" in kinds[1:second]  # the first sentence's audio came between
    words = [w["word"] for e in events if e["type"] == "speech.audio.timestamps" for w in e["words"]]
    assert words == text_words(TEXT)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    last_end = [e for e in events if e["type"] == "speech.audio.timestamps"][-1]["words"][-1]["end"]
    assert abs(decode(audio, "mp3").duration - last_end) <= 0.3


def test_a_bad_timestamps_value_is_a_400(timed_server):
    r = httpx.post(f"{timed_server.url}/v1/audio/speech",
                   json={"model": "piper", "voice": "alloy", "input": "Hi.", "timestamps": "syllable"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "timestamps"


def test_timed_answers_share_the_plain_routes_stream(timed_server):
    """The same encoder path as the plain route: nothing to speak is the short silence, not an
    empty file, and a one-sentence WAV carries its true sizes."""
    import io
    import wave

    r = httpx.post(f"{timed_server.url}/v1/audio/speech", timeout=60,
                   json={"model": "piper", "voice": "alloy", "input": "...", "response_format": "wav",
                         "timestamps": "word"})
    assert r.status_code == 200, r.text
    assert r.json()["words"] == [] and r.json()["duration_s"] == 0.25
    r = httpx.post(f"{timed_server.url}/v1/audio/speech", timeout=60,
                   json={"model": "piper", "voice": "alloy", "input": "Hello there.", "response_format": "wav",
                         "timestamps": "word"})
    data = base64.b64decode(r.json()["audio"])
    with wave.open(io.BytesIO(data)) as w:
        assert abs(w.getnframes() / w.getframerate() - r.json()["duration_s"]) < 0.01
