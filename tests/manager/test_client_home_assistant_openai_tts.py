"""Home Assistant's OpenAI TTS integration (sfortis/openai_tts), as clients.md reads its code: a full
URL, a Bearer key, the setup check ``{"model":"tts-1","input":".","voice":"alloy","response_format":"mp3"}``
with a 10 s timeout (any status >= 400 fails setup), ``extra_payload`` merged into the body, and
streaming reads of 8 KB that must decode as mp3 as they arrive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model
from ports import free_port

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


# -- the GPU host's set-up (models.gpu.json): tts-1 is a slow-starting model with Piper as fallback --

ROOT = Path(__file__).resolve().parents[2]
SETUP_CHECK = {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}
GPU_START_S = 30  # longer than the check's 10 s: a stopped GPU model cannot answer it itself


def setup_check(url: str) -> tuple[httpx.Response, float]:
    """The request async_validate_api_key sends: a JSON POST with the Bearer key, 10 s timeout."""
    t0 = time.monotonic()
    r = httpx.post(f"{url}/v1/audio/speech", content=json.dumps(SETUP_CHECK),
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}, timeout=10.0)
    return r, time.monotonic() - t0


def gpu_host_models() -> dict[str, Any]:
    """models.gpu.json as shipped (aliases, fallback, fallback_after_s, park), with the GPU model's
    container replaced by Piper behind a start that sleeps GPU_START_S (Chatterbox loading), and
    Piper on a free port."""
    cfg = json.loads((ROOT / "models.gpu.json").read_text())
    gpu, cpu = cfg["models"][0], cfg["models"][1]
    assert "tts-1" in gpu["aliases"] and gpu["fallback"] == ["piper"] and cpu["id"] == "piper"
    stand_in = piper_process_model(gpu["id"])
    argv = " ".join(stand_in["runtime"]["command"])
    stand_in["runtime"]["command"] = ["sh", "-c", f"sleep {GPU_START_S} && exec {argv}"]
    gpu.update(runtime=stand_in["runtime"], upstream_model="piper", readiness=stand_in["readiness"])
    for key in ("warmup", "voice_presets", "voices", "vram_mb"):  # Chatterbox's: not the stand-in's
        gpu.pop(key, None)
    cpu["runtime"]["port"] = free_port()
    return cfg


@pytest.fixture(scope="module")
def gpu_host(tmp_path_factory: pytest.TempPathFactory):
    m = ManagerProcess(tmp_path_factory.mktemp("ha-gpu"), gpu_host_models(), env={"VOXGATE_API_KEYS": KEY})
    yield m
    m.stop()


def test_home_assistant_setup_check_against_the_stopped_gpu_model_is_answered_by_piper(gpu_host: ManagerProcess) -> None:
    m, gpu = gpu_host, gpu_host_models()["models"][0]["id"]
    assert m.status(gpu)["state"] == "stopped" and m.status("piper")["state"] == "stopped"  # a fresh manager
    r, took = setup_check(m.url)
    assert r.status_code == 200, r.text
    assert took < 10.0, took  # within the client's own timeout (httpx would have raised past it anyway)
    assert r.headers["x-voxgate-model"] == "piper"
    assert r.headers["x-voxgate-fallback"] == "cold_start"
    assert r.headers["x-voxgate-requested-model"] == gpu
    assert r.headers["content-type"].startswith("audio/mpeg")
    assert decode(r.content, "mp3").duration > 0
    assert m.status(gpu)["state"] == "starting"  # it goes on starting in the background
    m.wait_state(gpu, "ready", GPU_START_S + 90)
    r2, _ = setup_check(m.url)
    assert r2.status_code == 200 and r2.headers["x-voxgate-model"] == gpu and "x-voxgate-fallback" not in r2.headers
    assert decode(r2.content, "mp3").duration > 0
    assert len(m.events("start", gpu)) == 1
    print(f"setup check against the stopped GPU model: answered by piper in {took:.2f}s")


def test_home_assistant_setup_check_against_the_parked_gpu_model_wakes_it(gpu_host: ManagerProcess) -> None:
    m, gpu = gpu_host, gpu_host_models()["models"][0]["id"]
    if m.status(gpu)["state"] == "stopped":  # run alone: bring it up first (its slow start is not under test here)
        httpx.post(f"{m.admin_url}/admin/models/{gpu}/load", timeout=GPU_START_S + 90)
    m.wait_state(gpu, "ready", GPU_START_S + 90)
    r = httpx.post(f"{m.admin_url}/admin/models/{gpu}/park", timeout=60)
    assert r.status_code == 200 and r.json()["state"] == "parked", r.text
    starts = len(m.events("start", gpu))
    r, took = setup_check(m.url)
    assert r.status_code == 200, r.text
    assert took < 10.0, took
    assert r.headers["x-voxgate-model"] == gpu and "x-voxgate-fallback" not in r.headers, (took, dict(r.headers), m.events("fallback"), m.events("wake"))  # woken, not fallen back
    assert decode(r.content, "mp3").duration > 0
    assert m.status(gpu)["state"] == "ready"
    assert m.metric("voxgate_manager_wakes_total", model=gpu) == 1
    assert len(m.events("start", gpu)) == starts  # a wake, not a restart
    print(f"setup check against the parked GPU model: woken and answered in {took:.2f}s")
