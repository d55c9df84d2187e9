"""The parked-state checks run against a real Piper server, shared by the process-runtime and
the Docker tests: the manager parks, wakes, holds a burst for one wake, stops after
parked_timeout_s, and loses nothing when park/wake meet traffic."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import httpx

from audio_check import decode
from manager_harness import ManagerProcess, speech


def server_park(m: ManagerProcess, port: int) -> dict:
    """The server's own view (its /health), past the manager."""
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["engines"]["piper"]["park"]


def check_admin_park_and_wake(m: ManagerProcess, port: int) -> None:
    assert speech(m.url).status_code == 200
    st = m.status("piper")
    assert st["state"] == "ready" and st["can_park"] is True
    r = httpx.post(f"{m.admin_url}/admin/models/piper/park", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "parked" and r.json()["parked_deadline_s"] > 0
    assert server_park(m, port)["state"] == "parked"
    r = httpx.post(f"{m.admin_url}/admin/models/piper/wake", timeout=60)
    assert r.status_code == 200 and r.json()["state"] == "ready"
    assert server_park(m, port)["state"] == "awake"
    assert m.metric("voxgate_manager_parks_total", model="piper", reason="admin") == 1
    assert m.metric("voxgate_manager_wakes_total", model="piper", reason="admin") == 1
    assert m.metric("voxgate_manager_wake_duration_seconds_count", model="piper") == 1
    assert speech(m.url).status_code == 200


def check_idle_parks_and_a_burst_gives_one_wake(m: ManagerProcess, port: int, n: int = 8) -> None:
    assert speech(m.url).status_code == 200
    m.wait_state("piper", "parked", timeout=15)
    assert m.metric("voxgate_manager_parks_total", model="piper", reason="idle") == 1
    assert server_park(m, port)["state"] == "parked"
    barrier = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return speech(m.url, "piper", f"Burst request {i}.")

    with cf.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    assert [r.status_code for r in results] == [200] * n
    assert all(decode(r.content, "wav").duration > 0.3 for r in results)
    assert m.metric("voxgate_manager_wakes_total", model="piper", reason="request") == 1
    assert server_park(m, port)["wakes"] == 1
    assert len(m.events("start", "piper")) == 1  # woken, never restarted
    states = [(e["from"], e["to"]) for e in m.events("state", "piper")]
    assert ("ready", "parking") in states and ("parking", "parked") in states
    assert ("parked", "waking") in states and ("waking", "ready") in states


def check_parked_model_stops_after_parked_timeout(m: ManagerProcess, gone) -> None:  # noqa: ANN001
    assert speech(m.url).status_code == 200
    parked_at = m.wait_state("piper", "parked", timeout=15)
    m.wait_state("piper", "stopped", timeout=15)
    assert gone(), "the server still runs after parked_timeout_s"
    assert m.metric("voxgate_manager_stops_total", model="piper", reason="parked_timeout") == 1
    assert parked_at >= 0
    # the next request starts it cold
    assert speech(m.url).status_code == 200
    assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 2


def check_park_and_wake_during_traffic_lose_nothing(m: ManagerProcess, rounds: int = 3) -> None:
    assert speech(m.url).status_code == 200
    stop = threading.Event()
    answers: list[int] = []

    def client(i: int) -> None:
        while not stop.is_set():
            r = speech(m.url, "piper", f"Client {i} keeps talking.")
            answers.append(r.status_code)
            if r.status_code == 200:
                assert decode(r.content, "wav").duration > 0.3

    parks_before = m.metric("voxgate_manager_parks_total", model="piper", reason="admin")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    parks = 0
    try:
        for _ in range(rounds):
            time.sleep(0.4)
            r = httpx.post(f"{m.admin_url}/admin/models/piper/park", timeout=60)
            # parked (and woken again at once by the held traffic)
            assert r.status_code == 200, r.text
            parks += r.status_code == 200
            httpx.post(f"{m.admin_url}/admin/models/piper/wake", timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert answers and set(answers) == {200}, answers
    assert parks == rounds
    assert m.metric("voxgate_manager_parks_total", model="piper", reason="admin") == parks_before + parks
