"""The RealtimeTTS compatibility API (routes/realtimetts.py) with httpx and websockets against a
real server: Piper loaded at start, Kokoro loaded by a switch, state persisted across restarts."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from audio_check import decode


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("rtts")
    return {"VOXGATE_ENGINES": "piper", "VOXGATE_VOICES_DIR": str(root / "voices"),
            "VOXGATE_RTTS_STATE_FILE": str(root / "state.json"), "KOKORO_JA_CACHE": str(root / "kokoro"),
            "VOXGATE_MAX_INPUT_CHARS": "500"}


@pytest.fixture(scope="module")
def rtts(env, server_factory):
    proc = server_factory(env)
    yield proc
    proc.stop()


def post(server, path, **kw):
    return httpx.post(f"{server.url}{path}", timeout=120, **kw)


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param, error
    return error


def test_generate_returns_a_complete_wav(rtts):
    r = post(rtts, "/v1/tts/generate", json={"text": "Hello from the RealtimeTTS route."})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(r.content))  # real RIFF sizes: soundfile knows the frame count
    assert info.samplerate == 24000 and 1.0 < info.frames / 24000 < 5.0
    assert decode(r.content, "wav").duration == pytest.approx(info.frames / 24000, abs=0.01)


def test_generate_validates_like_the_openai_route(rtts):
    assert_error(post(rtts, "/v1/tts/generate", json={}), 400, "text")
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "  "}), 400, "text")
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "x" * 501}), 400, "text")
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "Hi.", "speed": 10}), 400, "speed")
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "Hi.", "engine": "nope"}), 404, "engine")
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "Hi.", "voice": "nobody"}), 400, "voice")
    assert_error(post(rtts, "/v1/tts/generate", content=b"{nope", headers={"content-type": "application/json"}), 400)
    assert_error(post(rtts, "/v1/tts/generate", content=b"text=hi", headers={"content-type": "text/plain"}), 415)
    assert_error(post(rtts, "/v1/tts/generate", json={"text": "a" * 70000}), 413)


def test_stream_sse_sends_indexed_audio_then_metrics_and_done(rtts):
    events = []
    with httpx.stream("GET", f"{rtts.url}/v1/tts/stream-sse", timeout=120,
                      params={"text": "First sentence here. And a second one.", "speed": 1.5}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    names = [e for e, _ in events]
    assert names[-2:] == ["metrics", "done"] and set(names[:-2]) == {"audio"} and len(names) >= 4
    audio = [d for e, d in events if e == "audio"]
    assert [d["index"] for d in audio] == list(range(len(audio)))
    pcm = b"".join(base64.b64decode(d["chunk"]) for d in audio)
    metrics = events[-2][1]
    assert metrics["format"] == "pcm" and metrics["chunks"] == len(audio)
    assert decode(pcm, "pcm").duration == pytest.approx(metrics["audio_seconds"], abs=0.01)
    assert_error(httpx.get(f"{rtts.url}/v1/tts/stream-sse"), 400, "text")
    assert_error(httpx.get(f"{rtts.url}/v1/tts/stream-sse", params={"text": "Hi.", "speed": "fast"}), 400, "speed")


async def test_websocket_generate_stop_ping_and_errors(rtts):
    url = rtts.url.replace("http://", "ws://") + "/v1/tts/stream"
    async with connect(url) as ws:
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        await ws.send(json.dumps({"action": "generate", "text": "Over the socket.", "format": "mp3"}))
        chunks = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if msg["type"] == "audio":
                assert msg["index"] == len(chunks)
                chunks.append(base64.b64decode(msg["chunk"]))
            elif msg["type"] == "done":
                break
            else:
                assert msg["type"] == "metrics"
        assert decode(b"".join(chunks), "mp3").duration > 0.5
        await ws.send(json.dumps({"action": "generate"}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["param"] == "text"
        await ws.send(json.dumps({"action": "generate", "text": "A long one. " * 30}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert first["type"] == "audio"
        await ws.send(json.dumps({"action": "stop"}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] == "done":
                assert msg["stopped"] is True
                break


def _clip() -> bytes:
    import numpy as np

    t = np.arange(24000 * 6) / 24000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 24000, format="WAV")
    return buf.getvalue()


def test_voice_library_and_current_voice(rtts, env):
    r = post(rtts, "/v1/voices/create", data={"name": "Grandpa", "language": "en"},
             files={"audio_file": ("g.wav", _clip(), "audio/wav")})
    assert r.status_code == 201, r.text
    voice_id = r.json()["voice_id"]
    listed = httpx.get(f"{rtts.url}/v1/voices").json()
    assert listed["engine"] == "piper" and listed["current"] == "joe"
    assert {"id": voice_id, "usable": False} .items() <= next(v for v in listed["voices"] if v["id"] == voice_id).items()
    # piper cannot clone: the library voice cannot be its current voice
    assert_error(post(rtts, f"/v1/voices/{voice_id}/set"), 400, "voice_id")
    assert_error(post(rtts, "/v1/voices/nobody/set"), 404, "voice_id")
    assert_error(post(rtts, "/v1/voices/create", data={"name": "x"}, files={"audio_file": ("a.wav", b"RIFFjunk", "audio/wav")}), 400)
    assert_error(post(rtts, "/v1/voices/create", data={"name": "x"}, files={"file": ("a.wav", _clip(), "audio/wav")}), 400, "audio_file")
    assert_error(post(rtts, "/v1/voices/create", json={"name": "x"}), 415)
    assert httpx.delete(f"{rtts.url}/v1/voices/{voice_id}").status_code == 200
    assert_error(httpx.delete(f"{rtts.url}/v1/voices/{voice_id}"), 404, "voice_id")
    assert_error(httpx.delete(f"{rtts.url}/v1/voices/joe"), 404)


def test_switch_loads_the_engine_persists_it_and_tts1_follows(rtts, env, server_factory):
    engines = httpx.get(f"{rtts.url}/v1/engines").json()
    assert engines["current"] == "piper"
    by_id = {e["id"]: e for e in engines["engines"]}
    assert by_id["piper"]["loaded"] and by_id["kokoro"]["loaded"] is False
    assert_error(post(rtts, "/v1/engines/switch", json={"engine": "nope"}), 404, "engine")
    assert_error(post(rtts, "/v1/engines/switch", json={}), 400, "engine")
    r = post(rtts, "/v1/engines/switch", json={"engine": "kokoro"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ready"
    assert post(rtts, "/v1/voices/jf_gongitsune/set").json()["current"] == "jf_gongitsune"
    # the default engine and its current voice now serve requests that name neither
    r = post(rtts, "/v1/tts/generate", json={"text": "Switched."})
    assert r.status_code == 200
    assert r.headers["x-voxgate-engine"] == "kokoro" and r.headers["x-voxgate-voice"] == "jf_gongitsune"
    r = post(rtts, "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "wav"})
    assert r.headers["x-voxgate-engine"] == "kokoro"
    saved = json.loads(open(env["VOXGATE_RTTS_STATE_FILE"]).read())
    assert saved == {"engine": "kokoro", "voices": {"kokoro": "jf_gongitsune"}}
    # a restarted server (VOXGATE_ENGINES=piper) starts with kokoro loaded and as its default
    again = server_factory(env)
    try:
        for _ in range(600):
            state = httpx.get(f"{again.url}/health").json()["engines"]
            if state.get("kokoro", {}).get("state") == "ready":
                break
            import time

            time.sleep(0.1)
        engines = httpx.get(f"{again.url}/v1/engines").json()
        assert engines["current"] == "kokoro"
        r = post(again, "/v1/tts/generate", json={"text": "Still switched."})
        assert r.headers["x-voxgate-engine"] == "kokoro" and r.headers["x-voxgate-voice"] == "jf_gongitsune"
    finally:
        again.stop()
    assert post(rtts, "/v1/engines/switch", json={"engine": "piper"}).status_code == 200


def test_generate_takes_nul_and_nothing_to_speak_like_the_openai_route(rtts):
    # the same cleaning as /v1/audio/speech (speech_job.prepare): NUL spoken as a space, and an input
    # with nothing to speak a short silence, never a 500 or an empty file
    spoken = post(rtts, "/v1/tts/generate", json={"text": "Hello\x00 there."})
    assert spoken.status_code == 200, spoken.text
    assert decode(spoken.content, "wav").duration > 0.3
    quiet = post(rtts, "/v1/tts/generate", json={"text": "..."})
    assert quiet.status_code == 200, quiet.text
    assert 0 < decode(quiet.content, "wav").duration <= 1.0
