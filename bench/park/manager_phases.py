"""The park bench's manager phases: 16 through a manager against the same server direct, and the
manager's own park path (process runtime: cold start, idle parks, a burst to a parked model, an
explicit wake and the burst after it)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common.local_http import free_port, wait_http
from bench.common.processes import stop_process
from bench.park.gpu_server import Server, burst, smi_process_mib, speak

def manager_phase(server: Server, args: argparse.Namespace, res: dict[str, Any]) -> None:
    try:
        import voxgate_manager  # noqa: F401
    except ImportError as exc:
        res["manager"] = {"skipped": f"voxgate_manager not importable: {exc}"}
        return
    port, admin = free_port(), free_port()
    entry: dict[str, Any] = {"id": "chatterbox-turbo", "runtime": {"type": "remote", "base_url": server.url},
                             "readiness": {"path": "/health", "json_field": "status", "json_value": "ok"},
                             "queue_size": 64}
    if args.manager_concurrency:
        entry["concurrency"] = args.manager_concurrency
    cfg = Path("/tmp/park-bench-models.json")
    cfg.write_text(json.dumps({"models": [entry]}))
    env = dict(os.environ, VOXGATE_MANAGER_CONFIG=str(cfg), VOXGATE_MANAGER_PORT=str(port),
               VOXGATE_MANAGER_ADMIN_PORT=str(admin), VOXGATE_MANAGER_LOG_LEVEL="warning")
    log = open(Path(args.out) / "park_manager.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voxgate_manager.cli"], env=env, stdout=log, stderr=subprocess.STDOUT)
    murl = f"http://127.0.0.1:{port}"
    try:
        wait_http(murl + "/health", 60)
        with httpx.Client() as c:
            speak(c, murl, 1.0)  # routes the model (remote: health check) and warms the hop
        status = httpx.get(f"http://127.0.0.1:{admin}/admin/models/chatterbox-turbo", timeout=5).json()
        rows: dict[str, list[dict[str, Any]]] = {"direct": [], "manager": []}
        for _ in range(args.manager_bursts):
            rows["direct"].append(burst(server.url, args.burst, args.burst_audio_s))
            rows["manager"].append(burst(murl, args.burst, args.burst_audio_s))
        med = {k: statistics.median(r["audio_s_per_s"] for r in v) for k, v in rows.items()}
        res["manager"] = {"concurrency_in_entry": args.manager_concurrency or None,
                          "concurrency_used": status.get("concurrency"), "bursts": rows,
                          "direct_audio_s_per_s_median": med["direct"], "manager_audio_s_per_s_median": med["manager"],
                          "ratio": round(med["manager"] / med["direct"], 3)}
    finally:
        stop_process(proc, 20)


def manager_park_phase(args: argparse.Namespace, res: dict[str, Any]) -> None:
    """The manager's own park path on the GPU: a process-runtime entry with no concurrency set
    (taken from the server), a cold start through the manager, idle -> parked, a burst of
    ``--burst`` to the parked model (one wake), then ``--manager-park-cycles`` idle parks each
    followed by one request."""
    try:
        import voxgate_manager  # noqa: F401
    except ImportError as exc:
        res["manager_park"] = {"skipped": f"voxgate_manager not importable: {exc}"}
        return
    port, admin, sport = free_port(), free_port(), free_port()
    server_env = {"VOXGATE_ENGINES": "chatterbox-turbo", "VOXGATE_LOG_LEVEL": "info", "VOXGATE_QUEUE_SIZE": "64",
                  "VOXGATE_CONCURRENCY": str(args.burst), "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": args.ckpt,
                  "VOXGATE_CHATTERBOX_DEVICE": "cuda", "VOXGATE_CHATTERBOX_FAST": "on",
                  "VOXGATE_VOICES_DIR": "/tmp/park-bench-voices", "HF_HUB_OFFLINE": "1"}
    entry = {"id": "chatterbox-turbo", "runtime": {"type": "process", "port": sport, "environment": server_env,
                                                   "command": ["{python}", "-m", "voxgate_server.cli", "--host", "{host}",
                                                               "--port", "{port}"], "stop_timeout_s": 20},
             "readiness": {"path": "/health", "json_field": "status", "json_value": "ok"},
             "start_timeout_s": 600, "hold_max_s": 600, "idle_timeout_s": args.manager_idle_s, "queue_size": 64,
             "parked_timeout_s": 3600}
    cfg = Path("/tmp/park-bench-manager-process.json")
    cfg.write_text(json.dumps({"models": [entry]}))
    env = dict(os.environ, VOXGATE_MANAGER_CONFIG=str(cfg), VOXGATE_MANAGER_PORT=str(port),
               VOXGATE_MANAGER_ADMIN_PORT=str(admin), VOXGATE_MANAGER_LOG_LEVEL="info", VOXGATE_MANAGER_TICK_S="0.1")
    log = open(Path(args.out) / "park_manager.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voxgate_manager.cli"], env=env, stdout=log, stderr=subprocess.STDOUT)
    murl, aurl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}/admin/models/chatterbox-turbo"
    out: dict[str, Any] = {}
    res["manager_park"] = out

    def status() -> dict[str, Any]:
        return httpx.get(aurl, timeout=10).json()

    def wait_state(state: str, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if status()["state"] == state:
                return time.perf_counter() - t0
            time.sleep(0.1)
        raise RuntimeError(f"manager: not {state} in {timeout} s ({status()['state']})")

    def metric(name: str) -> float:
        total = 0.0
        for line in httpx.get(murl + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    try:
        wait_http(murl + "/health", 60)
        with httpx.Client() as c:
            cold = speak(c, murl, 2.0)
        st = status()
        out.update(cold_start_first_byte_s=cold["first_byte_s"], last_start_s=st.get("last_start_s"),
                   concurrency_used=st.get("concurrency"), can_park=st.get("can_park"))
        out["parked_after_idle_s"] = round(wait_state("parked", args.manager_idle_s + 60), 2)
        time.sleep(args.settle_s)
        pid = status()["runtime"].get("pid")
        out["server_mib_parked"] = smi_process_mib(pid) if pid else None
        out["burst_to_parked"] = burst(murl, args.burst, args.burst_audio_s)
        out["wakes_after_burst"] = metric("voxgate_manager_wakes_total")
        out["burst_warm"] = burst(murl, args.burst, args.burst_audio_s)
        cycles = []
        for _ in range(args.manager_park_cycles):
            wait_state("parked", args.manager_idle_s + 60)
            time.sleep(args.settle_s)
            with httpx.Client() as c:
                m = speak(c, murl, 4.0)
            cycles.append({"parked_first_byte_s": m["first_byte_s"], "last_park_s": status().get("last_park_s"),
                           "last_wake_s": status().get("last_wake_s")})
        out["cycles"] = cycles
        # the first burst after a wake through the manager's admin API (the target's figure):
        # parked by idle, woken explicitly, then the burst; --manager-wake-bursts times, as one
        # burst's figure moves by 10 % and more
        after_wake = []
        for _ in range(max(1, args.manager_wake_bursts)):
            wait_state("parked", args.manager_idle_s + 60)
            time.sleep(args.settle_s)
            t_wake = time.perf_counter()
            w = httpx.post(aurl + "/wake", timeout=300)
            wake = {"status": w.status_code, "client_s": round(time.perf_counter() - t_wake, 3),
                    "state": w.json().get("state") if w.status_code == 200 else None}
            after_wake.append({**burst(murl, args.burst, args.burst_audio_s), "wake": wake})
        out["explicit_wake"] = after_wake[0]["wake"]  # the wake of the first burst, reported beside it
        out["burst_after_wake"] = after_wake[0]
        out["bursts_after_wake"] = after_wake
        out["burst_after_wake_audio_s_per_s_median"] = statistics.median(b["audio_s_per_s"] for b in after_wake)
        if cycles:
            out["parked_first_byte_s_median"] = round(statistics.median(c["parked_first_byte_s"] for c in cycles), 3)
        out["parks_total"] = metric("voxgate_manager_parks_total")
        out["wakes_total"] = metric("voxgate_manager_wakes_total")
        out["cold_starts_total"] = metric("voxgate_manager_cold_starts_total")
    except Exception as exc:  # noqa: BLE001 - recorded with what was measured
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_process(proc, 40)
