"""Providers as models: OpenAI and ElevenLabs against loopback servers speaking their documented
wire formats (tests/manager/fake_providers.py), openai-compatible against a real voxgate-server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from audio_check import decode
from fake_providers import RATE, FakeProviders
from manager_harness import PYTHONPATH, ManagerProcess, port_open
from ports import free_port

OPENAI_KEY = "sk-test-openai-9f8e7d6c5b4aSECRET"
ELEVEN_KEY = "xi-test-eleven-0a1b2c3d4e5fSECRET"


@pytest.fixture
def fake():
    with FakeProviders(OPENAI_KEY, ELEVEN_KEY) as f:
        yield f


def openai_model(fake: FakeProviders, model_id: str = "oai", **runtime):
    return {"id": model_id, "upstream_model": "gpt-4o-mini-tts",
            "runtime": {"type": "openai", "base_url": fake.url + "/v1", "backoff_s": 0.05, **runtime},
            "price": {"per_1k_chars": 15.0, "currency": "USD", "source": "https://openai.com/api/pricing/", "as_of": "2026-12-01"}}


def eleven_model(fake: FakeProviders, model_id: str = "eleven", **runtime):
    return {"id": model_id, "runtime": {"type": "elevenlabs", "base_url": fake.url, "backoff_s": 0.05,
                                        "voices": {"alloy": "Rachel"}, **runtime}}


@pytest.fixture
def mgr(tmp_path):
    started: list[ManagerProcess] = []

    def make(models, env=None) -> ManagerProcess:
        m = ManagerProcess(tmp_path, models, env={"OPENAI_API_KEY": OPENAI_KEY, "ELEVENLABS_API_KEY": ELEVEN_KEY,
                                                  "VOXGATE_MANAGER_LOG_LEVEL": "debug", **(env or {})})
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def post(m: ManagerProcess, model: str, text: str, timeout: float = 30, **extra) -> httpx.Response:
    return httpx.post(f"{m.url}/v1/audio/speech", json={"model": model, "input": text, "voice": "alloy", **extra}, timeout=timeout)


def assert_no_keys(*texts: str) -> None:
    for t in texts:
        assert OPENAI_KEY not in t and ELEVEN_KEY not in t
        assert "9f8e7d6c5b4a" not in t and "0a1b2c3d4e5f" not in t


# -- OpenAI -----------------------------------------------------------------------------------


def test_openai_passes_every_field_through_and_streams_chunk_by_chunk(fake, mgr):
    m = mgr([openai_model(fake)])
    body = {"model": "oai", "input": "Hello #hold", "voice": "coral", "response_format": "pcm", "speed": 1.1,
            "instructions": "Speak warmly.", "some_future_field": {"x": 1}}
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["x-voxgate-model"] == "oai"
        assert r.headers["content-type"].startswith("audio/pcm")
        assert r.headers["x-voxgate-cost-estimate"] == f"{len('Hello #hold') / 1000 * 15:.6f} USD"
        it = r.iter_raw()
        first = next(it)  # arrives while the provider still holds the rest back: nothing is buffered
        assert first
        fake.release.set()
        data = first + b"".join(it)
    assert data == fake.pcm
    sent = fake.bodies[-1]
    assert sent == {**body, "model": "gpt-4o-mini-tts"}  # every field as it came, the model as OpenAI knows it
    fake.release.clear()
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", json={**body, "stream_format": "sse", "input": "SSE #hold"},
                      timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        first_event = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first_event[6:])["type"] == "speech.audio.delta"
        fake.release.set()
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]
    audio = base64.b64decode(json.loads(first_event[6:])["audio"]) + b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == fake.pcm
    models = httpx.get(f"{m.url}/v1/models").json()["data"]
    assert models[0]["runtime"] == "openai" and models[0]["price"]["source"].startswith("https://")
    assert models[0]["price"]["as_of"] == "2026-12-01"


def test_openai_errors_retries_and_timeouts(fake, mgr):
    m = mgr([openai_model(fake, retries=2, timeout_s=1.0)])
    r = post(m, "oai", "Once more #500x1", response_format="mp3")
    assert r.status_code == 200 and r.content == fake.mp3 and fake.calls["Once more #500x1"] == 2  # retried once
    t0 = time.monotonic()
    r = post(m, "oai", "Slow down #429x1", response_format="mp3")
    assert r.status_code == 200 and fake.calls["Slow down #429x1"] == 2 and time.monotonic() - t0 >= 1.0  # honoured Retry-After
    r = post(m, "oai", "Stop #429always")
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and fake.calls["Stop #429always"] == 3
    err = r.json()["error"]
    assert err["code"] == "provider_rate_limited" and err["type"] == "rate_limit_error"
    assert "provider OpenAI" in err["message"] and "Rate limit reached" in err["message"]
    r = post(m, "oai", "Broken #500always")
    assert r.status_code == 502 and r.json()["error"]["code"] == "provider_error" and fake.calls["Broken #500always"] == 3
    assert "provider OpenAI failed (500)" in r.json()["error"]["message"]
    t0 = time.monotonic()
    r = post(m, "oai", "Too slow #slow")
    assert r.status_code == 504 and r.json()["error"]["code"] == "provider_timeout" and time.monotonic() - t0 < 2.5
    assert fake.calls["Too slow #slow"] == 1  # a timeout is not retried (it may have been billed)
    # dropped mid-stream after audio was sent: the client connection is aborted, never retried
    with pytest.raises(httpx.HTTPError):
        post(m, "oai", "Cut #drop")
    assert fake.calls["Cut #drop"] == 1
    assert m.status("oai")["state"] == "ready"
    assert m.metric("voxgate_manager_provider_errors_total", model="oai", code="provider_rate_limited") == 1
    assert m.metric("voxgate_manager_provider_errors_total", model="oai", code="provider_timeout") == 1


def test_keys_never_appear_in_logs_or_error_bodies(fake, mgr, tmp_path):
    secret_file = tmp_path / "eleven.key"
    secret_file.write_text("xi-wrong-key-from-a-secret-file\n")
    wrong_openai = "sk-wrong-" + OPENAI_KEY[9:]
    m = mgr([openai_model(fake), eleven_model(fake)],
            env={"OPENAI_API_KEY": wrong_openai, "ELEVENLABS_API_KEY": "", "ELEVENLABS_API_KEY_FILE": str(secret_file)})
    r1 = post(m, "oai", "Who am I?")
    r2 = post(m, "eleven", "Who am I?")
    for r in (r1, r2):
        assert r.status_code == 502 and r.json()["error"]["code"] == "provider_auth", r.text
    assert "provider OpenAI rejected the manager's credentials (401)" in r1.json()["error"]["message"]
    assert "provider ElevenLabs rejected the manager's credentials (401): Invalid API key" in r2.json()["error"]["message"]
    texts = [r1.text, r2.text, m.log(), httpx.get(f"{m.admin_url}/admin/models").text, httpx.get(f"{m.url}/v1/models").text]
    assert_no_keys(*texts)
    for t in texts:
        assert wrong_openai not in t and "xi-wrong-key-from-a-secret-file" not in t and "sk-te**" not in t


def test_a_provider_out_of_quota_falls_back_to_the_next_model(fake, mgr):
    primary = {**openai_model(fake, "oai", retries=0), "fallback": ["compat"]}
    compat = {"id": "compat", "upstream_model": "tts-1",
              "runtime": {"type": "openai-compatible", "base_url": fake.url + "/v1", "api_key_env": "OPENAI_API_KEY"}}
    m = mgr([primary, compat])
    r = post(m, "oai", "Quota gone #quota", response_format="mp3")
    assert r.status_code == 200, r.text
    assert r.content == fake.mp3 and fake.bodies[-1]["model"] == "tts-1"
    assert r.headers["x-voxgate-model"] == "compat" and r.headers["x-voxgate-fallback"] == "provider_rate_limited"


# -- ElevenLabs -------------------------------------------------------------------------------


def test_elevenlabs_voices_settings_formats_and_chunking(fake, mgr):
    m = mgr([eleven_model(fake, max_chars=5000)])
    r = post(m, "eleven", "Hello there.", response_format="mp3", stability=0.3, similarity_boost=0.8, style=0.1,
             use_speaker_boost=True, speed=1.1)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg" and r.content == fake.mp3
    sent = fake.bodies[-1]
    assert sent["_voice_id"] == "21m00Tcm4TlvDq8ikWAM"  # alloy -> Rachel -> her id, from the voice list
    assert sent["voice_settings"] == {"stability": 0.3, "similarity_boost": 0.8, "style": 0.1, "use_speaker_boost": True,
                                      "speed": 1.1}
    assert sent["model_id"] == "eleven_multilingual_v2" and fake.queries[-1]["output_format"] == "mp3_44100_128"
    r = httpx.post(f"{m.url}/v1/audio/speech", json={"model": "eleven", "input": "Domi speaks.", "voice": "domi",
                                                     "response_format": "wav"}, timeout=30)
    assert r.status_code == 200 and fake.bodies[-1]["_voice_id"] == "AZnzlk1XvdvUeBnXmlld"
    assert fake.queries[-1]["output_format"] == f"pcm_{RATE}"
    wav = decode(r.content, "wav")
    assert abs(wav.duration - 0.5) < 0.05
    assert post(m, "eleven", "Raw.", response_format="pcm").content == fake.pcm
    for fmt in ("opus", "aac", "flac"):
        r = post(m, "eleven", f"Transcoded to {fmt}.", response_format=fmt)
        assert r.status_code == 200, r.text
        assert abs(decode(r.content, fmt).duration - 0.5) < 0.1, fmt
    n = len(fake.bodies)
    long_text = " ".join(f"Sentence {i} of a long chapter that a reader sends to the voice at once." for i in range(160))
    assert len(long_text) > 10000
    r = post(m, "eleven", long_text, response_format="pcm", timeout=60)
    assert r.status_code == 200 and r.content == fake.pcm * 3
    pieces = fake.bodies[n:]
    assert len(pieces) == 3 and all(len(p["text"]) <= 5000 for p in pieces)
    assert " ".join(p["text"] for p in pieces) == long_text and all(p["text"].endswith(".") for p in pieces)
    assert pieces[1]["previous_text"] and pieces[1]["next_text"]
    r = post(m, "eleven", "Nobody.", voice="nobody-by-that-name")
    assert r.status_code == 400 and "Rachel" in r.json()["error"]["message"]
    assert fake.calls["GET /v1/voices"] == 1  # the voice list is fetched once and kept
    voices = httpx.get(f"{m.url}/v1/audio/voices", params={"model": "eleven"}).json()["voices"]
    assert [(v["name"], v["voice_id"]) for v in voices] == [("Rachel", "21m00Tcm4TlvDq8ikWAM"), ("Domi", "AZnzlk1XvdvUeBnXmlld")]
    assert fake.calls["GET /v1/voices"] == 1


def test_elevenlabs_errors(fake, mgr):
    m = mgr([eleven_model(fake, retries=1, timeout_s=1.0)])
    r = post(m, "eleven", "Busy #429always")
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and fake.calls["Busy #429always"] == 2
    assert "provider ElevenLabs is rate limiting or out of quota (429): Too many concurrent requests" in r.json()["error"]["message"]
    assert post(m, "eleven", "Flaky #500x1").status_code == 200
    assert post(m, "eleven", "Slow #slow").status_code == 504
    with pytest.raises(httpx.HTTPError):
        post(m, "eleven", "Cut #drop", response_format="mp3")
    assert fake.calls["Cut #drop"] == 1


# -- openai-compatible against a real voxgate-server ------------------------------------------


def test_openai_compatible_against_a_second_real_voxgate_server(mgr, tmp_path):
    port = free_port()
    key_file = tmp_path / "server.key"
    key_file.write_text("server-key-123\n")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_ENGINES": "piper", "VOXGATE_LOG_LEVEL": "warning",
           "VOXGATE_API_KEYS": "server-key-123"}
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        entry = {"id": "other-box", "upstream_model": "piper",
                 "runtime": {"type": "openai-compatible", "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "OTHER_BOX_KEY"}}
        m = mgr([entry], env={"OTHER_BOX_KEY_FILE": str(key_file)})
        r = post(m, "other-box", "Spoken by another voxgate.", response_format="wav")
        assert r.status_code == 200, r.text
        audio = decode(r.content, "wav")
        assert audio.duration > 0.5 and float((audio.samples**2).mean()) ** 0.5 > 0.01
        r = post(m, "other-box", "", response_format="wav")  # its own validation error, mapped and named
        assert r.status_code == 400 and "openai-compatible" in r.json()["error"]["message"]
        assert "server-key-123" not in m.log()
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_an_unreachable_provider_is_retried_then_reported_or_passed_down_the_chain(fake, mgr):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    m = mgr([{"id": "down", "runtime": {"type": "openai", "base_url": nowhere + "/v1", "retries": 2, "backoff_s": 0.05}},
             {"id": "down-eleven", "runtime": {"type": "elevenlabs", "base_url": nowhere, "retries": 1, "backoff_s": 0.05}},
             {**openai_model(fake, "chained"), "runtime": {"type": "openai", "base_url": nowhere + "/v1", "backoff_s": 0.05},
              "fallback": ["oai"]},
             openai_model(fake, "oai")])
    for model in ("down", "down-eleven"):
        r = post(m, model, "Anyone there?")
        assert r.status_code == 502 and r.json()["error"]["code"] == "provider_unreachable", r.text
    assert "after 3 attempt(s)" in post(m, "down", "Anyone there?").json()["error"]["message"]
    r = post(m, "chained", "Then the next one.", response_format="mp3")
    assert r.status_code == 200 and r.headers["x-voxgate-model"] == "oai"
    assert r.headers["x-voxgate-fallback"] == "provider_unreachable"
