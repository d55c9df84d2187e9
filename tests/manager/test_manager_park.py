"""The manager's parked state with the process runtime and a real voxgate-server (Piper)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import httpx

import park_checks
from manager_harness import piper_process_model, port_open, speech


def parking_model(**kw):
    entry = piper_process_model(park=True, **kw)
    return entry, entry["runtime"]["port"]


def test_admin_park_and_wake_and_cli(mgr_factory):
    entry, port = parking_model()
    m = mgr_factory([entry])
    park_checks.check_admin_park_and_wake(m, port)
    import subprocess
    import sys

    from manager_harness import PYTHONPATH

    env = {"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"}
    for cmd, want in (("park", "parked"), ("wake", "ready")):
        out = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", cmd, "piper", "--admin-url", m.admin_url],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert want in out.stdout


def test_idle_parks_and_a_burst_to_the_parked_model_gives_one_wake_all_served(mgr_factory):
    entry, port = parking_model(idle_timeout_s=1, concurrency=4)
    m = mgr_factory([entry])
    park_checks.check_idle_parks_and_a_burst_gives_one_wake(m, port)


def test_parked_model_stops_after_parked_timeout(mgr_factory):
    entry, port = parking_model(idle_timeout_s=1, parked_timeout_s=2)
    m = mgr_factory([entry])
    park_checks.check_parked_model_stops_after_parked_timeout(m, lambda: not port_open(port))


def test_park_and_wake_during_traffic_lose_nothing(mgr_factory):
    entry, _ = parking_model(concurrency=3)
    m = mgr_factory([entry])
    park_checks.check_park_and_wake_during_traffic_lose_nothing(m)


def test_concurrency_from_the_server_lets_n_requests_be_in_flight_at_the_server_at_once(mgr_factory):
    """No ``concurrency`` in the entry: the manager takes the server's (VOXGATE_CONCURRENCY=4,
    in its /v1/models capabilities), and 4 long requests are in flight at the server together."""
    entry, port = parking_model()
    del entry["concurrency"]
    entry["runtime"]["environment"]["VOXGATE_CONCURRENCY"] = "4"
    m = mgr_factory([entry])
    assert speech(m.url).status_code == 200
    assert m.status("piper")["concurrency"] == 4
    text = " ".join(f"This is sentence number {i} of a long passage." for i in range(10))
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            h = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["engines"]["piper"]
            peak = max(peak, h["active"])
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: speech(m.url, "piper", text), range(4)))
    finally:
        done.set()
        watcher.join()
    assert [r.status_code for r in results] == [200] * 4
    assert peak == 4, f"at most {peak} requests were in flight at the server at once"


def test_admin_park_of_a_model_with_parking_off_is_refused(mgr_factory):
    m = mgr_factory([piper_process_model()])  # park: false
    assert speech(m.url).status_code == 200
    r = httpx.post(f"{m.admin_url}/admin/models/piper/park", timeout=30)
    assert r.status_code == 409 and r.json()["error"]["code"] == "park_not_supported"
    assert m.status("piper")["state"] == "ready"


def test_vram_budget_stops_a_parked_model_before_a_ready_idle_one(mgr_factory):
    """a is ready and idle longest; p is parked more recently: p is stopped to make room."""
    a = piper_process_model("a", vram_mb=400)
    p, _ = parking_model(model_id="p", vram_mb=400)
    b = piper_process_model("b", vram_mb=400)
    m = mgr_factory([a, p, b], env={"VOXGATE_MANAGER_VRAM_BUDGET_MB": "1000"})
    assert speech(m.url, "a").status_code == 200
    assert speech(m.url, "p").status_code == 200
    assert httpx.post(f"{m.admin_url}/admin/models/p/park", timeout=60).status_code == 200
    assert speech(m.url, "b").status_code == 200
    assert m.status("p")["state"] == "stopped" and m.status("a")["state"] == "ready"
    assert m.metric("voxgate_manager_stops_total", model="p", reason="vram") == 1
