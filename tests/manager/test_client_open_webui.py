"""Open WebUI, exactly as clients.md describes it: a base URL ending in /v1, the catalog GETs sent
with no Authorization header (``requests.get(url)``), and speech POSTed as ``{input, voice, model}``
with a Bearer key and no ``response_format`` (the answer is cached as .mp3)."""

from __future__ import annotations

import time

import httpx
import pytest
from audio_check import decode
from manager_harness import ManagerProcess, piper_process_model

KEY = "owui-key"


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("owui")
    models = [
        piper_process_model("piper", aliases=["tts-1"], voices=[{"id": "joe", "language": "en-US"}]),
        # a second model that must not be started by any listing (a stand-in for the GPU one)
        piper_process_model("big", aliases=["tts-1-hd"]),
    ]
    m = ManagerProcess(tmp, models, env={"VOXGATE_API_KEYS": KEY, "VOXGATE_PUBLIC_CATALOG": "1"})
    yield m
    m.stop()


def starts(m: ManagerProcess) -> float:
    return m.metric("voxgate_manager_cold_starts_total")


def test_open_webui_catalog_gets_need_no_key_and_start_nothing(mgr: ManagerProcess) -> None:
    base = f"{mgr.url}/v1"
    before = starts(mgr)
    models = httpx.get(f"{base}/audio/models")  # no Authorization header, as Open WebUI sends it
    voices = httpx.get(f"{base}/audio/voices")
    assert models.status_code == 200 and voices.status_code == 200, (models.text, voices.text)
    ids = [m["id"] for m in models.json()["models"]]
    assert {"piper", "tts-1", "big", "tts-1-hd"} <= set(ids)
    listed = voices.json()["voices"]
    assert all({"id", "name"} <= set(v) for v in listed)
    assert "joe" in [v["id"] for v in listed]  # declared in models.json, known before any run
    assert httpx.get(f"{base}/models").status_code == 200
    assert starts(mgr) == before == 0
    assert {mgr.status("piper")["state"], mgr.status("big")["state"]} == {"stopped"}
    # speech still needs the key
    r = httpx.post(f"{base}/audio/speech", json={"input": "Hello.", "voice": "alloy", "model": "tts-1"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert starts(mgr) == 0


def test_open_webui_speech_without_response_format_is_mp3(mgr: ManagerProcess) -> None:
    r = httpx.post(f"{mgr.url}/v1/audio/speech", json={"input": "One sentence from the chat.", "voice": "alloy", "model": "tts-1"},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/mpeg")
    audio = decode(r.content, "mp3")
    assert audio.duration > 0.8


def test_open_webui_voices_come_from_the_last_run_after_the_model_stopped(mgr: ManagerProcess) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{mgr.url}/v1/models/piper").json()["capabilities"] is None:  # the report after its start
        assert time.monotonic() < deadline, "the catalog never read the running model"
        time.sleep(0.1)
    assert httpx.post(f"{mgr.admin_url}/admin/models/piper/unload", timeout=60).status_code == 200
    before = starts(mgr)
    r = httpx.get(f"{mgr.url}/v1/audio/voices", params={"model": "tts-1"})
    assert r.status_code == 200
    ids = [v["id"] for v in r.json()["voices"]]
    assert "joe" in ids and "alloy" in ids  # alloy: the server's own alias list, seen when it ran
    assert r.json()["source"] == "server" and r.headers.get("x-voxgate-cached") == "true"
    assert starts(mgr) == before and mgr.status("piper")["state"] == "stopped"


def test_catalog_needs_the_key_without_public_catalog(tmp_path) -> None:
    m = ManagerProcess(tmp_path, [piper_process_model("piper")], env={"VOXGATE_API_KEYS": KEY})
    try:
        for path in ("/v1/audio/models", "/v1/audio/voices", "/v1/models"):
            assert httpx.get(m.url + path).status_code == 401
            assert httpx.get(m.url + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert httpx.get(m.url + "/health").status_code == 200
    finally:
        m.stop()
