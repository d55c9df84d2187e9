"""Concurrency, admission control and cancellation, against a real server."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

LONG = " ".join(f"Sentence {i} is here to keep the engine busy for a while longer than usual." for i in range(16))


def _post(url: str, text: str = LONG, fmt: str = "mp3", timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", timeout=timeout,
                      json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt})


def test_health_answers_while_four_long_syntheses_run(server_factory):
    srv = server_factory({"VOXGATE_CONCURRENCY": "2", "VOXGATE_QUEUE_SIZE": "4"})
    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(_post(srv.url).status_code)) for _ in range(4)]
    for w in workers:
        w.start()
    polls: list[tuple[int, int]] = []
    saw_busy = False
    while any(w.is_alive() for w in workers):
        health = httpx.get(f"{srv.url}/health", timeout=5)
        models = httpx.get(f"{srv.url}/v1/models", timeout=5)
        polls.append((health.status_code, models.status_code))
        engine = health.json()["engines"]["piper"]
        saw_busy = saw_busy or engine["active"] > 0
        time.sleep(0.1)
    for w in workers:
        w.join()
    assert results == [200] * 4
    assert len(polls) >= 5 and all(p == (200, 200) for p in polls)
    assert saw_busy


def test_full_queue_answers_429_with_retry_after(server_factory):
    srv = server_factory({"VOXGATE_CONCURRENCY": "1", "VOXGATE_QUEUE_SIZE": "0", "VOXGATE_RETRY_AFTER_S": "3"})
    with httpx.Client(timeout=300) as client, client.stream(
        "POST", f"{srv.url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
    ) as first:
        assert first.status_code == 200
        second = _post(srv.url, "Hello.")
        assert second.status_code == 429
        assert second.headers["retry-after"] == "3"
        assert second.json()["error"]["type"] == "rate_limit_error"
        for _ in first.iter_bytes():
            pass
    assert _post(srv.url, "Hello again.").status_code == 200


def test_client_disconnect_stops_the_work(server_factory):
    srv = server_factory({"VOXGATE_CONCURRENCY": "1", "VOXGATE_QUEUE_SIZE": "0"})
    text = " ".join([LONG] * 4)[:4096]
    with httpx.Client(timeout=300) as client:
        with client.stream("POST", f"{srv.url}/v1/audio/speech",
                           json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}) as r:
            got = 0
            for chunk in r.iter_bytes():
                got += len(chunk)
                if got > 48000:
                    break
    # The one worker frees up long before 4096 characters could have been spoken.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(f"{srv.url}/health").json()["engines"]["piper"]["active"] == 0:
            break
        time.sleep(0.1)
    engine = httpx.get(f"{srv.url}/health").json()["engines"]["piper"]
    assert engine["active"] == 0
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'status="499"' in metrics
    audio_line = next(l for l in metrics.splitlines() if l.startswith("voxgate_audio_seconds_total"))
    # 4096 characters are about 4-5 minutes of speech; far less was made.
    assert float(audio_line.split()[-1]) < 120
    assert _post(srv.url, "Still here.").status_code == 200
