"""The response cache on the real Piper server: files on disk plus the tts_cache index in SQLite."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from audio_check import decode
from manager_harness import PYTHONPATH, ManagerProcess, piper_process_model, speech

LONG_TEXT = " ".join(f"This is sentence number {i} of a long passage read aloud by the speech server." for i in range(12))


@pytest.fixture
def mgr(tmp_path):
    started: list[ManagerProcess] = []

    def make(models, data_dir: Path | None = None, **env: str) -> ManagerProcess:
        data = data_dir or tmp_path / "data"
        m = ManagerProcess(tmp_path, models, env={"VOXGATE_MANAGER_DATA_DIR": str(data), **env})
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def index_rows(data: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data / "voxgate.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM tts_cache").fetchall()
    finally:
        conn.close()


def test_hit_after_miss_is_byte_identical_and_never_starts_the_stopped_model(mgr, tmp_path):
    m = mgr([piper_process_model()])
    r1 = speech(m.url, text="Cached speech.", fmt="mp3")
    assert r1.status_code == 200 and r1.headers["x-voxgate-cache"] == "miss"
    # a hit while the model runs leaves its idle timer alone (the deadline keeps counting down)
    before = m.status("piper")["idle_deadline_s"]
    time.sleep(1.0)
    assert speech(m.url, text="Cached speech.", fmt="mp3").headers["x-voxgate-cache"] == "hit"
    after = m.status("piper")["idle_deadline_s"]
    assert after <= before - 0.9, (before, after)
    httpx.post(f"{m.admin_url}/admin/models/piper/unload", timeout=30).raise_for_status()
    assert m.status("piper")["state"] == "stopped"
    r2 = speech(m.url, text="Cached speech.", fmt="mp3", speed=1)  # speed 1 is the default: same key
    assert r2.status_code == 200 and r2.headers["x-voxgate-cache"] == "hit"
    assert r2.content == r1.content and r2.headers["content-type"] == r1.headers["content-type"]
    assert r2.headers["x-voxgate-model"] == "piper"
    assert m.status("piper")["state"] == "stopped"
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
    assert m.metric("voxgate_manager_cache_requests_total", result="hit") == 2
    assert m.metric("voxgate_manager_cache_requests_total", result="miss") == 1
    rows = index_rows(tmp_path / "data")
    assert len(rows) == 1 and rows[0]["model"] == "piper" and rows[0]["voice"] == "alloy" and rows[0]["format"] == "mp3"
    assert rows[0]["hits"] == 2 and rows[0]["size"] == len(r1.content) and rows[0]["duration"] > 0.3
    # another voice, speed or format is another answer; a bypass header skips the cache both ways
    r3 = speech(m.url, text="Cached speech.", fmt="mp3", speed=1.25)
    assert r3.headers["x-voxgate-cache"] == "miss"
    for headers in ({"Cache-Control": "no-store"}, {"X-Voxgate-Cache": "bypass"}):
        r = httpx.post(f"{m.url}/v1/audio/speech", json={"model": "piper", "input": "Cached speech.", "voice": "alloy",
                                                         "response_format": "mp3"}, headers=headers, timeout=60)
        assert r.status_code == 200 and r.headers["x-voxgate-cache"] == "bypass"
    assert m.metric("voxgate_manager_cache_requests_total", result="bypass") == 2
    # the admin route and the CLI inspect and purge it
    st = httpx.get(f"{m.admin_url}/admin/cache").json()
    assert st["enabled"] and st["entries"] == 2 and st["bytes"] == sum(e["size"] for e in st["entries_list"])
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    out = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "cache", "--admin-url", m.admin_url],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0 and "2 entries" in out.stdout, out
    out = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "cache", "--purge", "--admin-url", m.admin_url],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0 and "purged 2 entries" in out.stdout, out
    assert index_rows(tmp_path / "data") == []
    assert not [p for p in (tmp_path / "data" / "cache").rglob("*.mp3")]


def test_ttl_expiry(mgr):
    m = mgr([piper_process_model()], VOXGATE_MANAGER_CACHE_TTL_S="1.5")
    assert speech(m.url, text="Short lived.").headers["x-voxgate-cache"] == "miss"
    assert speech(m.url, text="Short lived.").headers["x-voxgate-cache"] == "hit"
    time.sleep(1.7)
    assert speech(m.url, text="Short lived.").headers["x-voxgate-cache"] == "miss"
    assert speech(m.url, text="Short lived.").headers["x-voxgate-cache"] == "hit"


def test_eviction_at_the_size_cap_under_concurrent_writes(mgr, tmp_path):
    cap = 100_000
    m = mgr([piper_process_model(concurrency=4)], VOXGATE_MANAGER_CACHE_MAX_MB=str(cap / 1024 / 1024))
    assert speech(m.url, text="Warm.", fmt="mp3").status_code == 200
    texts = [f"Concurrent answer number {i} goes into the cache." for i in range(10)]
    with cf.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda t: speech(m.url, text=t, fmt="mp3"), texts))
    assert all(r.status_code == 200 and r.headers["x-voxgate-cache"] == "miss" for r in results)
    sizes = [len(r.content) for r in results]
    assert sum(sizes) > cap  # the writes together overrun the cap
    rows = index_rows(tmp_path / "data")
    files = sorted(str(p.relative_to(tmp_path / "data" / "cache")) for p in (tmp_path / "data" / "cache").rglob("*.mp3"))
    assert sorted(r["path"] for r in rows) == files  # index and disk agree
    assert 0 < sum(r["size"] for r in rows) <= cap
    assert m.metric("voxgate_manager_cache_evictions_total") == 11 - len(rows)
    assert m.metric("voxgate_manager_cache_bytes") == sum(r["size"] for r in rows)
    # the survivors are whole answers: each file is exactly what its client got, and answers as a hit
    from voxgate_manager.cache.key import cache_key

    by_key = {cache_key("piper", {"model": "piper", "input": t, "voice": "alloy", "response_format": "mp3"}): (t, r)
              for t, r in zip(texts, results)}
    kept = [r for r in rows if r["key"] in by_key]
    assert kept
    for row in kept:
        assert (tmp_path / "data" / "cache" / row["path"]).read_bytes() == by_key[row["key"]][1].content
    text, first = by_key[kept[0]["key"]]
    again = speech(m.url, text=text, fmt="mp3")
    assert again.headers["x-voxgate-cache"] == "hit" and again.content == first.content
    # a voice changed through the manager takes its cached answers with it, and only its own
    assert speech(m.url, text="Another voice.", fmt="mp3", voice="echo").status_code == 200
    httpx.delete(f"{m.url}/v1/audio/voices/alloy", params={"model": "piper"}, timeout=30)
    assert [r["voice"] for r in index_rows(tmp_path / "data")] == ["echo"]


def test_a_half_streamed_answer_whose_client_left_is_not_stored(mgr, tmp_path):
    m = mgr([piper_process_model()])
    assert speech(m.url, text="Warm.").status_code == 200
    body = {"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["x-voxgate-cache"] == "miss"
        got = 0
        for chunk in r.iter_raw():
            got += len(chunk)
            if got > 4096:
                break  # leave mid-answer
    deadline = time.monotonic() + 20
    while m.status("piper")["requests_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    rows = index_rows(tmp_path / "data")
    assert [r["voice"] for r in rows if r["format"] == "pcm"] == []
    assert not list((tmp_path / "data" / "cache" / "tmp").iterdir())  # the partial file is gone
    r = httpx.post(f"{m.url}/v1/audio/speech", json=body, timeout=120)
    assert r.status_code == 200 and r.headers["x-voxgate-cache"] == "miss"  # not a hit of the half answer
    r2 = httpx.post(f"{m.url}/v1/audio/speech", json=body, timeout=120)
    assert r2.headers["x-voxgate-cache"] == "hit" and r2.content == r.content


def test_the_index_survives_a_restart_and_a_sampling_model_needs_a_seed(mgr, tmp_path):
    models = [piper_process_model(), piper_process_model("sampler", sampling=True)]
    m = mgr(models)
    r1 = speech(m.url, text="Remember me.", fmt="wav")
    assert r1.headers["x-voxgate-cache"] == "miss"
    assert speech(m.url, "sampler", "Random each time.").headers["x-voxgate-cache"] == "bypass"
    assert speech(m.url, "sampler", "Seeded.", seed=7).headers["x-voxgate-cache"] == "miss"
    m.stop()
    m.start()
    assert m.status("piper")["state"] == "stopped"
    r2 = speech(m.url, text="Remember me.", fmt="wav")
    assert r2.headers["x-voxgate-cache"] == "hit" and r2.content == r1.content
    assert decode(r2.content, "wav").duration > 0.3
    assert speech(m.url, "sampler", "Seeded.", seed=7).headers["x-voxgate-cache"] == "hit"
    assert m.status("piper")["state"] == "stopped" and m.status("sampler")["state"] == "stopped"
    assert m.metric("voxgate_manager_cold_starts_total") == 0
