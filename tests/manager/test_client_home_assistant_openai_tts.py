"""Home Assistant's OpenAI TTS integration (sfortis/openai_tts), as clients.md reads its code: a full
URL, a Bearer key, the setup check ``{"model":"tts-1","input":".","voice":"alloy","response_format":"mp3"}``
with a 10 s timeout (any status >= 400 fails setup), ``extra_payload`` merged into the body, and
streaming reads of 8 KB that must decode as mp3 as they arrive."""

from __future__ import annotations

import time

import av
import httpx
import pytest
from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model

KEY = "ha-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
STORY = " ".join(["The front door is locked and the garage door is closed."] * 4)


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory):
    m = ManagerProcess(tmp_path_factory.mktemp("ha"), [piper_process_model("piper", aliases=["tts-1"])], env={"VOXGATE_API_KEYS": KEY})
    yield m
    m.stop()


def test_home_assistant_setup_check_against_a_stopped_model(mgr: ManagerProcess) -> None:
    assert mgr.status("piper")["state"] == "stopped"
    url = f"{mgr.url}/v1/audio/speech"  # the full URL the user types
    t0 = time.monotonic()
    r = httpx.post(url, json={"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"},
                   headers=HEADERS, timeout=10.0)
    took = time.monotonic() - t0
    assert r.status_code < 400, r.text  # what async_validate_api_key requires
    assert r.headers["content-type"].startswith("audio/mpeg")
    assert mgr.metric("voxgate_manager_cold_starts_total", model="piper") == 1
    print(f"setup check against a stopped Piper model answered {r.status_code} in {took:.2f}s")


def test_home_assistant_stream_decodes_incrementally(mgr: ManagerProcess) -> None:
    codec = av.CodecContext.create("mp3", "r")
    reads, decoded_at, samples = 0, None, 0
    head, tag_left = b"", None  # a leading ID3v2 tag is metadata: players skip it, so does this
    with httpx.stream("POST", f"{mgr.url}/v1/audio/speech", headers=HEADERS, timeout=60.0,
                      json={"model": "tts-1", "input": STORY, "voice": "alloy", "response_format": "mp3"}) as r:
        assert r.status_code == 200
        for piece in r.iter_raw(8192):
            reads += 1
            if tag_left is None:
                head += piece
                if len(head) < 10:
                    continue
                tag_left = 10 + _syncsafe(head[6:10]) if head.startswith(b"ID3") else 0
                piece, head = head, b""
            cut = min(tag_left, len(piece))
            piece, tag_left = piece[cut:], tag_left - cut
            for packet in codec.parse(piece):
                for frame in codec.decode(packet):
                    samples += frame.samples
                    if decoded_at is None:
                        decoded_at = reads
    for frame in codec.decode(None):
        samples += frame.samples
    assert decoded_at is not None and reads > 3
    assert decoded_at <= 2, f"first audio decoded only after read {decoded_at} of {reads}"
    assert samples / 24000 > 5  # the whole story, not a prefix


def _syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def test_home_assistant_extra_payload_is_honoured(mgr: ManagerProcess) -> None:
    text = "Good morning, it is seven o'clock."
    base = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "mp3"}
    plain = httpx.post(f"{mgr.url}/v1/audio/speech", json=base, headers=HEADERS, timeout=30)
    extra = {"speed": 1.8, "instructions": "cheerful", "some_other_field": 1}  # extra_payload merged by HA
    fast = httpx.post(f"{mgr.url}/v1/audio/speech", json={**base, **extra}, headers=HEADERS, timeout=30)
    assert plain.status_code == 200 and fast.status_code == 200, fast.text
    ratio = decode(plain.content, "mp3").duration / decode(fast.content, "mp3").duration
    assert 1.4 < ratio < 2.2, ratio
    assert fast.headers.get("x-voxgate-ignored") == "instructions"  # said, not silently dropped
