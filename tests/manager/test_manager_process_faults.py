"""Faults on the process runtime (issue 17): a wrapper command's server is not orphaned by a SIGKILLed
manager, a hung (SIGSTOPped) model is detected while requests are in flight, a reload during a drain
strands nobody, an early exit is reported with its stderr, and requests_total tells outcomes apart."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import threading
import time

import httpx

from audio_check import decode
from manager_harness import piper_process_model, port_open, speech
from ports import free_port

LONG_TEXT = " ".join(f"This is sentence number {i} of a long passage read aloud by the speech server." for i in range(40))




def _wait_port_closed(port: int, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not port_open(port):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def test_wrapped_command_leaves_no_orphan_when_the_manager_is_sigkilled(mgr_factory):
    port = free_port()
    entry = piper_process_model(port=port)
    entry["runtime"]["command"] = ["bash", "-c", "echo wrapper starting >&2; {python} -m voxgate_server.cli --host {host} --port {port}; echo done"]
    m = mgr_factory([entry])
    assert speech(m.url).status_code == 200
    assert port_open(port)
    m.stop(signal.SIGKILL)
    try:
        took = _wait_port_closed(port, 20)
        assert took is not None, f"the server wrapped by bash kept port {port} after the manager was SIGKILLed"
    finally:
        if port_open(port):  # do not leak it into other tests
            os.system(f"fuser -k -n tcp {port} >/dev/null 2>&1")


def test_process_that_exits_before_ready_is_reported_with_its_stderr(mgr_factory):
    entry = piper_process_model(hold_max_s=30)
    entry["runtime"]["command"] = ["{python}", "-c", "import sys; print('loading voices', file=sys.stderr); "
                                   "print('FATAL: no such engine xyz', file=sys.stderr); sys.exit(3)"]
    m = mgr_factory([entry])
    r = speech(m.url, timeout=60)
    assert r.status_code == 503
    err = r.json()["error"]
    assert "exited with code 3" in err["message"] and "FATAL: no such engine xyz" in err["message"], err
    st = m.status("piper")
    assert "FATAL: no such engine xyz" in st["last_error"] and st["last_exit"]["exit_code"] == 3


def test_waiting_for_a_busy_slot_is_not_told_not_ready(mgr_factory):
    m = mgr_factory([piper_process_model(concurrency=1, hold_max_s=2)])
    deadline = time.monotonic() + 60
    while speech(m.url).status_code != 200:  # a cold start may take longer than this hold_max_s
        assert time.monotonic() < deadline
        time.sleep(0.5)
    started, done = threading.Event(), threading.Event()

    def long_one() -> int:  # holds the only slot until the second request has had its answer
        with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                          json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
            for _ in r.iter_raw():  # a slow reader: loopback buffers would swallow an unread answer whole
                started.set()
                time.sleep(0.02)
                if done.is_set():
                    break
            return r.status_code

    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(long_one)
        assert started.wait(60)
        try:
            r = speech(m.url, timeout=30)
        finally:
            done.set()
        assert r.status_code == 503 and r.headers.get("retry-after")
        err = r.json()["error"]
        assert err["code"] == "model_busy" and "busy" in err["message"] and "not ready" not in err["message"], err
        assert fut.result() == 200


def test_requests_total_keeps_model_4xx_and_client_disconnects_apart(mgr_factory):
    m = mgr_factory([piper_process_model()])
    assert speech(m.url).status_code == 200
    r = httpx.post(f"{m.url}/v1/audio/speech", json={"model": "piper", "input": "hi", "voice": "no-such-voice-x"}, timeout=30)
    assert 400 <= r.status_code < 500, r.text  # the model's own answer
    with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=60,
                      json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as s:
        next(s.iter_raw())  # then leave mid-stream
    deadline = time.monotonic() + 10
    while m.metric("voxgate_manager_requests_total", model="piper", outcome="client_gone") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert m.metric("voxgate_manager_requests_total", model="piper", outcome="ok") == 1
    assert m.metric("voxgate_manager_requests_total", model="piper", outcome="client_error") == 1
    assert m.metric("voxgate_manager_requests_total", model="piper", outcome="client_gone") == 1


def test_hung_model_is_detected_while_requests_are_in_flight(mgr_factory):
    entry = piper_process_model(liveness={"interval_s": 1, "timeout_s": 2, "failures": 2})
    m = mgr_factory([entry])
    assert speech(m.url).status_code == 200
    pgid = m.status("piper")["runtime"]["pid"]
    bound = 2 * (1 + 2)  # failures x (interval_s + timeout_s), as docs/manager.md says
    outcome: dict[str, object] = {}

    def streamed() -> None:
        t0 = None
        try:
            with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                              json={"model": "piper", "input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}) as r:
                for i, _ in enumerate(r.iter_raw()):
                    if i == 0:
                        os.killpg(pgid, signal.SIGSTOP)  # the whole model hangs, port still open
                        t0 = time.monotonic()
            outcome["error"] = None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            outcome["error"] = repr(exc)
        outcome["after_s"] = time.monotonic() - t0 if t0 else None

    th = threading.Thread(target=streamed)
    th.start()
    try:
        th.join(60)
        assert not th.is_alive(), "a stream from a hung model hung too"
        assert outcome["error"], "a hung model's stream must end in an error, not look complete"
        assert outcome["after_s"] is not None and outcome["after_s"] < bound + 3, outcome
        st = m.status("piper")
        assert st["state"] in ("failed", "starting", "ready") and "liveness" in (st["last_exit"] or {}).get("message", ""), st
        assert m.metric("voxgate_manager_crashes_total", model="piper", reason="health") == 1
        r = speech(m.url, timeout=120)  # the hung server was killed; the next request starts a new one
        assert r.status_code == 200 and decode(r.content, "wav").duration > 0.3
        assert m.status("piper")["runtime"]["pid"] != pgid
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_hung_model_request_waiting_for_headers_gets_a_502(mgr_factory):
    m = mgr_factory([piper_process_model(liveness={"interval_s": 1, "timeout_s": 1, "failures": 2})])
    assert speech(m.url).status_code == 200
    pgid = m.status("piper")["runtime"]["pid"]
    os.killpg(pgid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = speech(m.url, timeout=60)
        took = time.monotonic() - t0
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "upstream_unresponsive" and took < 2 * (1 + 1) + 3
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_reload_of_a_changed_model_strands_no_request_and_starts_it_once(mgr_factory):
    entry = piper_process_model(hold_max_s=60, drain_timeout_s=30)
    m = mgr_factory([entry])
    assert speech(m.url).status_code == 200
    busy = threading.Event()

    def long_one() -> int:  # keeps the old entry draining for a while
        with httpx.stream("POST", f"{m.url}/v1/audio/speech", timeout=120,
                          json={"model": "piper", "input": LONG_TEXT[:800], "voice": "alloy", "response_format": "pcm"}) as r:
            for _ in r.iter_raw():
                busy.set()
                time.sleep(0.01)
            return r.status_code

    with cf.ThreadPoolExecutor(3) as ex:
        streaming = ex.submit(long_one)
        assert busy.wait(60)
        m.write_models([dict(entry, idle_timeout_s=300)])
        reload_ = ex.submit(httpx.post, f"{m.admin_url}/admin/reload", timeout=120)
        deadline = time.monotonic() + 10
        while m.status("piper")["state"] == "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        r = speech(m.url, text="Arriving during the drain.", timeout=120)
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert decode(r.content, "wav").duration > 0.3
        assert took < 40, took  # served once the drain ends and the new entry starts, not after hold_max_s
        assert streaming.result() == 200
        assert reload_.result().json()["changed"] == ["piper"]
    st = m.status("piper")
    assert st["idle_timeout_s"] == 300 and st["state"] == "ready"
    time.sleep(1.0)
    starts = m.events("start", "piper")
    assert len(starts) == 2, starts  # the first start, and the new entry's: the old one never restarts
    assert speech(m.url).status_code == 200
