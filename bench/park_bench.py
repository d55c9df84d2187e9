"""Cold start and parked state of a real voxgate-server with Chatterbox Turbo on CUDA.

One server process, the shipped engine defaults (random-weight checkpoint):
- launch -> first audio byte, split by stage (the server's own log lines, timed as they arrive:
  weights loaded, fast path warmed up, engine ready, /health 200, first byte);
- ``--cycles`` park/wake cycles: POST /admin/park (client time and the engine's own split),
  nvidia-smi of the server process and of the whole GPU while parked, then a streamed request
  of TEXT (101 characters) to the parked server: parked -> first audio byte, and how the wake
  split;
- a request sent while the park is under way (must be served after the wake);
- the first burst of ``--burst`` streams after a wake against a warm burst;
- with voxgate_manager importable: ``--burst`` concurrent streams through a manager (remote
  runtime, concurrency from the server's capabilities unless ``--manager-concurrency``) against
  direct, interleaved burst by burst.

    python bench/park_bench.py --ckpt CKPT --out DIR      # park_bench.json + park_bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
from local_http import free_port, stream_speech, wait_http  # noqa: E402
from turbo_clip import SR, TEXT  # noqa: E402 - the clip every GPU bench speaks
STAGES = (  # (name, text in a server log line that ends the stage)
    ("server_started", "Started server process"),  # uvicorn's: the web stack is imported
    ("libraries_imported", "engine libraries imported ahead"),  # engines/preimport.py's thread
    ("chatterbox_imported", "chatterbox imported in"),  # the engine's load has them
    ("checkpoint_read", "checkpoint read in"),  # upstream's from_local returned
    ("weights_loaded", "chatterbox-turbo loaded on"),
    ("fast_path_warm", "chatterbox fast path on"),
    ("engine_ready", "engine chatterbox-turbo ready"),
    # after ready since 2026-12-03 (chatterbox_fast.pipeline.BackgroundWarmup)
    ("s3gen_graphs_captured", "S3Gen graphs captured in the background"),
    ("warm_burst_ended", "warm-up burst of"),  # done, or stopped by a request
)


def wait_stage(server: "Server", stage: str, timeout_s: float) -> float | None:
    """Seconds waited for ``stage``'s log line (None: it did not come in ``timeout_s``)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if server.stage_times().get(stage) is not None:
            return round(time.perf_counter() - t0, 3)
        time.sleep(0.25)
    return None


def smi_process_mib(pid: int) -> int:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=10).stdout
    for line in out.strip().splitlines():
        row = [x.strip() for x in line.split(",")]
        if len(row) == 2 and row[0].isdigit() and int(row[0]) == pid:
            return int(row[1]) if row[1].isdigit() else -1
    return 0  # not on the GPU at all


def smi_total_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=10).stdout
    return int(out.strip().splitlines()[0])


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({"VOXGATE_ENGINES": "chatterbox-turbo", "VOXGATE_HOST": "127.0.0.1", "VOXGATE_PORT": str(self.port),
                    "VOXGATE_LOG_LEVEL": "info", "VOXGATE_CONCURRENCY": str(args.burst), "VOXGATE_QUEUE_SIZE": "64",
                    "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": args.ckpt, "VOXGATE_CHATTERBOX_DEVICE": "cuda",
                    "VOXGATE_CHATTERBOX_FAST": "on", "VOXGATE_VOICES_DIR": "/tmp/park-bench-voices",
                    "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        self.lines: list[tuple[float, str]] = []
        self.log = open(Path(args.out) / "park_server.log", "w")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "voxgate_server.cli"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t = time.perf_counter() - self.t0
            self.lines.append((t, line.rstrip()))
            self.log.write(f"{t:9.3f} {line}")
            self.log.flush()

    def wait_ready(self, timeout: float) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - self.t0
                if r.json().get("status") == "failed":
                    raise RuntimeError(f"server failed: {r.text}")
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready in time")

    def stage_times(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, needle in STAGES:
            out[name] = next((round(t, 3) for t, line in self.lines if needle in line), None)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def speak(client: httpx.Client, url: str, max_s: float) -> dict[str, float]:
    body = {"model": "chatterbox-turbo", "input": TEXT, "voice": "alloy", "response_format": "pcm",
            "max_duration_s": max_s}
    t0, first, end, n = stream_speech(client, url, body, 300)
    return {"first_byte_s": round(first - t0, 4), "total_s": round(end - t0, 4),
            "audio_s": round(n / 2 / SR, 3), "t0": t0, "end": end}


def burst(url: str, n: int, max_s: float, pid: int | None = None) -> dict[str, Any]:
    """``n`` streamed requests at once; with ``pid``, nvidia-smi's reading of that process is
    sampled meanwhile and its peak reported (the VRAM target is at 16 concurrent)."""
    barrier = threading.Barrier(n)
    peak: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak.append(smi_process_mib(pid))
            except Exception:  # noqa: BLE001 - a missed sample
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True) if pid is not None else None
    if sampler is not None:
        sampler.start()

    def one(_: int) -> dict[str, float]:
        with httpx.Client() as c:
            barrier.wait()
            return speak(c, url, max_s)

    try:
        with ThreadPoolExecutor(n) as pool:
            rows = list(pool.map(one, range(n)))
    finally:
        done.set()
    wall = max(r["end"] for r in rows) - min(r["t0"] for r in rows)
    audio = sum(r["audio_s"] for r in rows)
    out = {"n": n, "wall_s": round(wall, 3), "audio_s": round(audio, 2), "audio_s_per_s": round(audio / wall, 1),
           "first_byte_median_s": round(statistics.median(r["first_byte_s"] for r in rows), 4),
           "first_byte_max_s": round(max(r["first_byte_s"] for r in rows), 4)}
    if sampler is not None:
        sampler.join(2)
        out["server_mib_peak"] = max(peak) if peak else None
        out["smi_samples"] = len(peak)
    return out


def park_detail(url: str) -> dict[str, Any]:
    return httpx.get(url + "/health", timeout=10).json()["engines"]["chatterbox-turbo"].get("park", {})


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
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
        if cycles:
            out["parked_first_byte_s_median"] = round(statistics.median(c["parked_first_byte_s"] for c in cycles), 3)
        out["parks_total"] = metric("voxgate_manager_parks_total")
        out["wakes_total"] = metric("voxgate_manager_wakes_total")
        out["cold_starts_total"] = metric("voxgate_manager_cold_starts_total")
    except Exception as exc:  # noqa: BLE001 - recorded with what was measured
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Park bench ({res.get('gpu', '?')})", "", "## Launch -> first audio byte (s from process launch)", "",
             "| stage | at |", "|---|---|"]
    for k, v in res["launch"].items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Park/wake cycles", "",
              "| cycle | park (client) s | park (engine) s | released MiB | server MiB parked | GPU MiB parked | "
              "parked -> first byte s | wake (engine) s | re-map s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(res["cycles"]):
        released = (c.get("park_detail") or {}).get("released_mib")
        remap = (c.get("wake_detail") or {}).get("remap_s")
        lines.append(f"| {i + 1} | {c['park_client_s']} | {c['park_engine_s']} | {released} | {c['server_mib_parked']} | "
                     f"{c['gpu_mib_parked']} | {c['parked_first_byte_s']} | {c.get('wake_engine_s')} | {remap} |")
    s = res["summary"]
    lines += ["", f"Median: park {s['park_client_s_median']} s, parked -> first byte {s['parked_first_byte_s_median']} s "
              f"(warm first byte {s['warm_first_byte_s_median']} s), server while parked {s['server_mib_parked_max']} MiB "
              f"(at ready {res['server_mib_ready']} MiB)."]
    if "race" in res:
        lines += ["", f"Request sent while parking: {res['race']}"]
    if "burst_after_wake" in res:
        lines += ["", f"Burst of {res['burst_to_parked']['n']} sent to the parked model (the wake in it): "
                  f"{res['burst_to_parked']['audio_s_per_s']} audio s/s, first byte median "
                  f"{res['burst_to_parked'].get('first_byte_median_s')} s. First burst after an explicit wake "
                  f"({res['explicit_wake']}): {res['burst_after_wake']['audio_s_per_s']} audio s/s. Warm burst (after "
                  f"the background capture): {res['burst_warm']['audio_s_per_s']} audio s/s, server peak "
                  f"{res['burst_warm'].get('server_mib_peak')} MiB in nvidia-smi during it."]
    m = res.get("manager")
    if m and "ratio" in m:
        lines += ["", f"{res['burst_warm']['n']} concurrent through the manager (concurrency {m['concurrency_used']}): "
                  f"{m['manager_audio_s_per_s_median']} audio s/s vs {m['direct_audio_s_per_s_median']} direct "
                  f"(ratio {m['ratio']})."]
    elif m:
        lines += ["", f"Manager phase: {m}"]
    mp = res.get("manager_park")
    if mp and "burst_to_parked" in mp:
        lines += ["", f"Through the manager (process runtime, concurrency from the server: {mp.get('concurrency_used')}): "
                  f"cold start -> first byte {mp.get('cold_start_first_byte_s')} s (manager phases {mp.get('last_start_s')}); "
                  f"parked {mp.get('server_mib_parked')} MiB; burst of {mp['burst_to_parked']['n']} to the parked model: "
                  f"{mp['burst_to_parked']['audio_s_per_s']} audio s/s, first byte median "
                  f"{mp['burst_to_parked']['first_byte_median_s']} s, wakes {mp.get('wakes_after_burst')}; warm burst "
                  f"{mp['burst_warm']['audio_s_per_s']} audio s/s; parked -> first byte median "
                  f"{mp.get('parked_first_byte_s_median')} s over {len(mp.get('cycles', []))} idle parks."]
    elif mp:
        lines += ["", f"Manager park phase: {mp}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--burst", type=int, default=16)
    p.add_argument("--burst-audio-s", type=float, default=10.0)
    p.add_argument("--manager-bursts", type=int, default=3, help="0: no through-the-manager comparison")
    p.add_argument("--manager-concurrency", type=int, default=0, help="0: the manager reads it from the server")
    p.add_argument("--settle-s", type=float, default=2.0, help="wait after a park before nvidia-smi")
    p.add_argument("--manager-park-cycles", type=int, default=3, help="-1: no manager park phase")
    p.add_argument("--manager-idle-s", type=float, default=3.0)
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"text_chars": len(TEXT)}
    try:
        res["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        pass
    server = Server(args)
    try:
        ready = server.wait_ready(600)
        with httpx.Client() as c:
            first = speak(c, server.url, 2.0)
            res["launch"] = {**server.stage_times(), "health_200": round(ready, 3),
                             "first_byte": round(first["t0"] + first["first_byte_s"] - server.t0, 3)}
            res["server_mib_ready"] = smi_process_mib(server.proc.pid)
            warm = [speak(c, server.url, 4.0) for _ in range(3)]
        res["warm_first_byte_s"] = [w["first_byte_s"] for w in warm]
        res["park_support"] = httpx.get(server.url + "/v1/models/chatterbox-turbo", timeout=10).json()[
            "capabilities"].get("park")
        # the steady state: after the background capture (a burst during it measures the capture)
        res["s3gen_graphs_captured_wait_s"] = wait_stage(server, "s3gen_graphs_captured", 90)
        res["warm_burst_ended_wait_s"] = wait_stage(server, "warm_burst_ended", 60)  # it runs when idle
        res["burst_warm"] = burst(server.url, args.burst, args.burst_audio_s, pid=server.proc.pid)
        res["server_mib_after_burst"] = smi_process_mib(server.proc.pid)
        cycles = []
        for _ in range(args.cycles):
            t0 = time.perf_counter()
            r = httpx.post(server.url + "/admin/park", timeout=300)
            park_s = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"park: HTTP {r.status_code} {r.text}")
            time.sleep(args.settle_s)
            row: dict[str, Any] = {"park_client_s": round(park_s, 3),
                                   "park_engine_s": r.json()["engines"]["chatterbox-turbo"]["park_s"],
                                   "server_mib_parked": smi_process_mib(server.proc.pid), "gpu_mib_parked": smi_total_mib(),
                                   "park_detail": park_detail(server.url).get("last_park_detail")}
            with httpx.Client() as c:
                m = speak(c, server.url, 4.0)
            d = park_detail(server.url)
            row.update(parked_first_byte_s=m["first_byte_s"], parked_total_s=m["total_s"], audio_s=m["audio_s"],
                       wake_engine_s=d.get("last_wake_s"), wake_detail=d.get("last_wake_detail"),
                       server_mib_awake=smi_process_mib(server.proc.pid))
            cycles.append(row)
            print(json.dumps(row), flush=True)
        res["cycles"] = cycles
        # a request sent while the park is under way
        with ThreadPoolExecutor(2) as pool:
            park_f = pool.submit(httpx.post, server.url + "/admin/park", timeout=300)
            time.sleep(0.05)
            with httpx.Client() as c:
                m = speak(c, server.url, 4.0)
            res["race"] = {"park_status": park_f.result().status_code, "request_first_byte_s": m["first_byte_s"],
                           "request_audio_s": m["audio_s"], "served": m["audio_s"] > 0,
                           "state_after": park_detail(server.url).get("state")}
        # a burst that finds the model parked (the wake is in its figure), then one after an
        # explicit wake (what the model serves once awake)
        r = httpx.post(server.url + "/admin/park", timeout=300)
        time.sleep(args.settle_s)
        res["burst_to_parked"] = burst(server.url, args.burst, args.burst_audio_s)
        httpx.post(server.url + "/admin/park", timeout=300)
        time.sleep(args.settle_s)
        t_wake = time.perf_counter()
        w = httpx.post(server.url + "/admin/wake", timeout=300)
        res["explicit_wake"] = {"status": w.status_code, "client_s": round(time.perf_counter() - t_wake, 3)}
        res["burst_after_wake"] = burst(server.url, args.burst, args.burst_audio_s)
        med = statistics.median
        res["summary"] = {
            "park_client_s_median": round(med(c["park_client_s"] for c in cycles), 3),
            "parked_first_byte_s_median": round(med(c["parked_first_byte_s"] for c in cycles), 3),
            "server_mib_parked_max": max(c["server_mib_parked"] for c in cycles),
            "warm_first_byte_s_median": round(med(res["warm_first_byte_s"]), 4),
            "targets": {"parked_first_byte_le_1_5_s": med(c["parked_first_byte_s"] for c in cycles) <= 1.5,
                        "parked_le_512_mib": max(c["server_mib_parked"] for c in cycles) <= 512,
                        "park_le_3_s": med(c["park_client_s"] for c in cycles) <= 3.0},
        }
        if args.manager_bursts > 0:
            manager_phase(server, args, res)
    except Exception as exc:  # noqa: BLE001 - whatever was measured is still written
        res["error"] = f"{type(exc).__name__}: {exc}"
        print("park bench failed:", res["error"], file=sys.stderr)
    finally:
        server.stop()
    if args.manager_park_cycles >= 0:
        manager_park_phase(args, res)
    (Path(args.out) / "park_bench.json").write_text(json.dumps(res, indent=1))
    if "summary" in res:
        (Path(args.out) / "park_bench.md").write_text(markdown(res))
    print(json.dumps({k: res.get(k) for k in ("launch", "summary", "race", "burst_warm", "burst_to_parked", "burst_after_wake",
                                                "manager", "manager_park", "error")}, indent=1))
    return 1 if "error" in res else 0


if __name__ == "__main__":
    raise SystemExit(main())
