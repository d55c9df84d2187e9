"""The application API on a real manager with real Piper: streamed generate with history,
segments with timings, the voice library, and a 20,000-character job with ordered SSE progress
that survives a manager restart in the middle."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from audio_check import decode
from piper_manager import SSECollector, auth, chapter, sign_up, start_manager, tone_wav


@pytest.fixture
def mgr(tmp_path):
    m = start_manager(tmp_path)
    yield m
    m.stop()


def test_generate_segments_voices_and_history(mgr):
    a, b = sign_up(mgr.url, "anna"), sign_up(mgr.url, "ben")
    with httpx.stream("POST", f"{mgr.url}/api/tts/generate", headers=auth(a), timeout=120,
                      json={"model_id": "piper", "text": "Hello from the studio. This is streamed speech.", "voice": "alloy",
                            "format": "wav", "speed": 1.0}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("audio/wav")
        assert r.headers.get("transfer-encoding") == "chunked"  # relayed as it is made, not buffered
        parts = list(r.iter_bytes())
    audio = decode(b"".join(parts), "wav")
    assert audio.duration > 1.5 and float((audio.samples ** 2).mean()) ** 0.5 > 0.01
    # the clip is in a's history, replayed from disk, and nowhere in b's
    hist = httpx.get(f"{mgr.url}/api/tts/history", headers=auth(a)).json()["data"]
    assert len(hist) == 1 and hist[0]["text"].startswith("Hello from the studio")
    replay = httpx.get(f"{mgr.url}{hist[0]['audio_url']}", headers=auth(a))
    assert replay.content == b"".join(parts)
    assert httpx.get(f"{mgr.url}/api/tts/history", headers=auth(b)).json()["data"] == []
    assert httpx.get(f"{mgr.url}{hist[0]['audio_url']}", headers=auth(b)).status_code == 404
    # the model's state shows in the catalog
    card = httpx.get(f"{mgr.url}/api/tts/models", headers=auth(a)).json()["data"][0]
    assert card["id"] == "piper" and card["state"] == "ready"

    seg = httpx.post(f"{mgr.url}/api/tts/generate-segments", headers=auth(a), timeout=120,
                     json={"text": "One short line. A second, somewhat longer line follows it! And a third?"}).json()
    assert [s["index"] for s in seg["segments"]] == [0, 1, 2]
    assert seg["segments"][0]["start_s"] == 0 and all(
        x["end_s"] == pytest.approx(y["start_s"], abs=1e-3) for x, y in zip(seg["segments"], seg["segments"][1:]))
    import base64

    whole = decode(base64.b64decode(seg["audio_base64"]), "wav")
    assert whole.duration == pytest.approx(seg["duration_s"], abs=0.05) == pytest.approx(seg["segments"][-1]["end_s"], abs=0.01)

    up = httpx.post(f"{mgr.url}/api/tts/voices", params={"model_id": "piper"}, headers=auth(a), timeout=60,
                    files={"file": ("hum.wav", tone_wav(), "audio/wav")}, data={"name": "Studio Hum", "language": "en"})
    assert up.status_code == 201, up.text
    vid = up.json()["id"]
    listing = httpx.get(f"{mgr.url}/api/tts/voices", params={"model_id": "piper"}, headers=auth(a)).json()
    assert any(v["id"] == "joe" for v in listing["voices"])  # Piper's own voice
    mine = [v for v in listing["library"] if v["id"] == vid]
    assert mine and mine[0]["uploaded_by_me"] and mine[0]["deletable"] and mine[0]["name"] == "Studio Hum"
    assert mine[0]["usable"] is False  # Piper does not clone: the clip is kept, not spoken with
    other = httpx.get(f"{mgr.url}/api/tts/voices", params={"model_id": "piper"}, headers=auth(b)).json()["library"]
    assert [v["deletable"] for v in other if v["id"] == vid] == [False]
    preview = httpx.get(f"{mgr.url}/api/tts/voices/{vid}/audio", params={"model_id": "piper"}, headers=auth(a))
    assert preview.status_code == 200 and decode(preview.content, "wav").duration == pytest.approx(6.0, abs=0.05)
    # b may not delete a's voice; a may
    denied = httpx.delete(f"{mgr.url}/api/tts/voices/{vid}", params={"model_id": "piper"}, headers=auth(b))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert httpx.delete(f"{mgr.url}/api/tts/voices/{vid}", params={"model_id": "piper"}, headers=auth(a)).status_code == 200
    library = httpx.get(f"{mgr.url}/api/tts/voices", params={"model_id": "piper"}, headers=auth(a)).json()["library"]
    assert vid not in [v["id"] for v in library]


def test_long_job_survives_a_manager_restart(tmp_path):
    m = start_manager(tmp_path, VOXGATE_MANAGER_JOB_CHUNK_CHARS="800")
    try:
        a, b = sign_up(m.url, "cleo"), sign_up(m.url, "dan")
        text = chapter(20_000)
        assert len(text) == 20_000
        job = httpx.post(f"{m.url}/api/tts/jobs", headers=auth(a), timeout=30,
                         json={"model_id": "piper", "text": text, "voice": "alloy"}).json()
        assert job["status"] in ("queued", "running") and job["chunks_total"] >= 25
        total = job["chunks_total"]
        t0 = time.monotonic()
        assert httpx.get(f"{m.url}/api/tts/jobs/{job['id']}", headers=auth(b)).status_code == 404
        assert httpx.get(f"{m.url}/api/tts/jobs/{job['id']}/events", headers=auth(b)).status_code == 404
        sse = SSECollector(m.url, job["id"], auth(a))
        deadline = time.monotonic() + 300
        while sum(1 for e in sse.events if e[1] == "chunk-progress") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = httpx.get(f"{m.url}/api/tts/jobs/{job['id']}", headers=auth(a)).json()
        assert 3 <= before["chunks_done"] < total, (before["status"], before["error"], m.log()[-3000:])
        # the manager restarts mid-job (SIGTERM: it drains and exits; the job stays in SQLite)
        assert m.stop(signal.SIGTERM) == 0
        m.start()
        assert sse.done.wait(600), (sse.events[-3:], m.log()[-2000:])
        sse.stop = True
        final = httpx.get(f"{m.url}/api/tts/jobs/{job['id']}", headers=auth(a)).json()
        assert final["status"] == "complete" and final["resumed"] == 1 and final["chunks_done"] == total, final
        names = [e[1] for e in sse.events]
        assert names[-1] == "complete" and "error" not in names and sse.reconnects >= 1
        # ordered: ids strictly increase, every chunk exactly once and in order, progress never goes back
        ids = [e[0] for e in sse.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids == list(range(ids[0], ids[-1] + 1))
        chunks = [e[2]["chunk"] for e in sse.events if e[1] == "chunk-progress"]
        assert chunks == list(range(total))
        done = [e[2]["chunks_done"] for e in sse.events if e[1] == "progress"]
        assert done == sorted(done) and done[-1] == total
        assert any(e[2].get("resumed") for e in sse.events if e[1] == "progress")
        # the result is one WAV of every chunk, downloadable by its owner only
        wav = httpx.get(f"{m.url}/api/tts/jobs/{job['id']}/audio", headers=auth(a), timeout=60)
        assert wav.status_code == 200 and wav.headers["content-disposition"].startswith("attachment")
        audio = decode(wav.content, "wav")
        assert audio.duration == pytest.approx(final["audio_seconds"], abs=0.05) and audio.duration > 600
        assert httpx.get(f"{m.url}/api/tts/jobs/{job['id']}/audio", headers=auth(b)).status_code == 404
        assert httpx.get(f"{m.url}/api/tts/jobs", headers=auth(b)).json()["data"] == []
        print(json.dumps({"job_s": round(time.monotonic() - t0, 1), "chunks": total, "audio_s": audio.duration, "events": len(sse.events), "reconnects": sse.reconnects}))
    finally:
        m.stop()


def test_cancel_and_a_job_whose_model_is_gone_fails_clearly(tmp_path):
    m = start_manager(tmp_path)
    try:
        a = sign_up(m.url, "eve")
        job = httpx.post(f"{m.url}/api/tts/jobs", headers=auth(a), json={"text": chapter(30_000), "voice": "alloy"}).json()
        cancelled = httpx.post(f"{m.url}/api/tts/jobs/{job['id']}/cancel", headers=auth(a)).json()
        assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == "cancelled"
        events = httpx.get(f"{m.url}/api/tts/jobs/{job['id']}/events", headers=auth(a), timeout=10).text
        assert "event: error" in events and '"cancelled"' in events
        job2 = httpx.post(f"{m.url}/api/tts/jobs", headers=auth(a), json={"text": chapter(30_000), "voice": "alloy"}).json()
        m.stop(signal.SIGKILL)
        # the next manager has no such model: the job ends with an error that says so
        cfg = json.loads(m.config.read_text())
        cfg["models"][0]["id"] = "piper-renamed"
        m.write_models(cfg)
        m.start()
        sse = SSECollector(m.url, job2["id"], auth(a))
        assert sse.done.wait(30)
        sse.stop = True
        last = sse.events[-1]
        assert last[1] == "error" and last[2]["code"] == "model_not_found" and "no longer configured" in last[2]["message"]
        assert httpx.get(f"{m.url}/api/tts/jobs/{job2['id']}", headers=auth(a)).json()["status"] == "error"
    finally:
        m.stop()
