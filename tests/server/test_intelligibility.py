"""PocketSphinx (its English model ships in the wheel) understands what the server says."""

from __future__ import annotations

import httpx
import pytest

from audio_check import decode, transcribe, wer

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
]


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_word_error_rate_is_at_most_half(server, fmt):
    text = " ".join(SENTENCES)
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=120,
                   json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt})
    assert r.status_code == 200
    audio = decode(r.content, fmt)
    hypothesis = transcribe(audio.samples, audio.sample_rate)
    score = wer(text, hypothesis)
    assert score <= 0.5, (score, hypothesis)


def test_noise_is_not_understood(server):
    """The oracle itself can fail: white noise does not pass for the sentences."""
    import numpy as np

    noise = np.random.default_rng(0).normal(0, 0.1, 24000 * 8).astype(np.float32)
    assert wer(" ".join(SENTENCES), transcribe(noise, 24000)) > 0.8
