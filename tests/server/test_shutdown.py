"""SIGTERM (``docker stop``, the manager's idle stop) ends the server cleanly, even mid-stream."""

from __future__ import annotations

import signal
import threading
import time

import httpx

LONG = " ".join(f"This is sentence number {i} of a passage that is long enough to be busy." for i in range(40))


def _stream(url: str, results: list, index: int, audio_started: threading.Event) -> None:
    try:
        with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "mp3"}) as r:
            body = b""
            for part in r.iter_raw():
                if r.status_code == 200:
                    audio_started.set()
                body += part
            results[index] = (r.status_code, body)
    except httpx.HTTPError as exc:
        results[index] = ("error", repr(exc))


def test_sigterm_mid_stream_is_clean(server_factory):
    srv = server_factory({"VOXGATE_LOG_LEVEL": "info", "VOXGATE_CONCURRENCY": "1", "VOXGATE_SHUTDOWN_GRACE_S": "1"})
    results: list = [None] * 3
    audio_started = threading.Event()
    threads = [threading.Thread(target=_stream, args=(srv.url, results, i, audio_started)) for i in range(3)]
    threads[0].start()
    assert audio_started.wait(30)
    for t in threads[1:]:
        t.start()
    time.sleep(0.5)  # one request is streaming, two wait for the single worker
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(20)
    elapsed = time.monotonic() - started
    for t in threads:
        t.join(30)
    log = srv.log()
    assert rc == 0, log
    assert elapsed < 1 + 5, elapsed
    lines = [line for line in log.splitlines() if "GET /health" not in line and line.strip()]
    assert lines[-1].startswith("INFO:") and "Finished server process" in lines[-1], lines[-5:]
    for bad in ("Traceback", "Event loop is closed", "ERROR", "Exception in ASGI"):
        assert bad not in log, log
    assert log.count("Started server process") == 1
    statuses = [r[0] for r in results]
    assert statuses == [200, 503, 503], [(r[0], r[1][:120]) for r in results]
    assert len(results[0][1]) > 1000  # the stream got audio and ended (early), not an error
    for status, body in results:
        if status == 503:
            assert b'"shutting_down"' in body
