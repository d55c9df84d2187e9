"""Cold start and parked state of a real voxgate-server with Chatterbox Turbo on CUDA.

One server process, the shipped engine defaults (random-weight checkpoint):
- launch -> first audio byte, split by stage (the server's own log lines, timed as they arrive:
  weights loaded, fast path warmed up, engine ready, /health 200, first byte);
- ``--cycles`` park/wake cycles: POST /admin/park (client time and the engine's own split),
  nvidia-smi of the server process and of the whole GPU while parked, then a streamed request
  of TEXT (101 characters) to the parked server: parked -> first audio byte, and how the wake
  split;
- a request sent while the park is under way (must be served after the wake);
- the first burst of ``--burst`` streams after a wake against ``--warm-bursts`` warm ones (median);
- with voxgate_manager importable (``manager_phases.py``): ``--burst`` concurrent streams through a manager (remote
  runtime, concurrency from the server's capabilities unless ``--manager-concurrency``) against
  direct, interleaved burst by burst.

    python bench/park/park_bench.py --ckpt CKPT --out DIR      # park_bench.json + park_bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.park.gpu_server import Server, burst, park_detail, smi_process_mib, smi_total_mib, speak, wait_stage  # noqa: E402,E501
from bench.park.manager_phases import manager_park_phase, manager_phase  # noqa: E402
from bench.turbo.turbo_clip import TEXT  # noqa: E402 - the clip every GPU bench speaks


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
                  f"({res['explicit_wake']}): {res['burst_after_wake']['audio_s_per_s']} audio s/s. Warm bursts (after "
                  f"the background capture): median {res.get('burst_warm_audio_s_per_s_median')} audio s/s of "
                  f"{[b['audio_s_per_s'] for b in res.get('bursts_warm', [res['burst_warm']])]}, server peak "
                  f"{res['burst_warm'].get('server_mib_peak')} MiB in nvidia-smi during them."]
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
                  f"{mp['burst_warm']['audio_s_per_s']} audio s/s; first burst after a wake through the manager "
                  f"({mp.get('explicit_wake')}): {(mp.get('burst_after_wake') or {}).get('audio_s_per_s')} audio s/s "
                  f"(each of {len(mp.get('bursts_after_wake', []))} wakes: "
                  f"{[b['audio_s_per_s'] for b in mp.get('bursts_after_wake', [])]}, first byte median "
                  f"{[b['first_byte_median_s'] for b in mp.get('bursts_after_wake', [])]} s; median "
                  f"{mp.get('burst_after_wake_audio_s_per_s_median')}); "
                  f"parked -> first byte median "
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
    p.add_argument("--warm-bursts", type=int, default=3, help="warm bursts in a row; the median is reported")
    p.add_argument("--burst-gap-s", type=float, default=float(os.environ.get("BENCH_BURST_GAP_S", 6.0)),
                   help="wait between the warm bursts (default: $BENCH_BURST_GAP_S or 6)")
    p.add_argument("--manager-bursts", type=int, default=3, help="0: no through-the-manager comparison")
    p.add_argument("--manager-concurrency", type=int, default=0, help="0: the manager reads it from the server")
    p.add_argument("--settle-s", type=float, default=2.0, help="wait after a park before nvidia-smi")
    p.add_argument("--manager-park-cycles", type=int, default=3, help="-1: no manager park phase")
    p.add_argument("--manager-idle-s", type=float, default=3.0)
    p.add_argument("--manager-wake-bursts", type=int, default=3,
                   help="idle park, explicit wake, burst: this many times through the manager")
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
        # several bursts: one burst's audio s/s varies by about 10 %; each after a gap longer than
        # the KV cache's idle trim (5 s) by default, so each grows the cache from nothing, as a
        # burst after a quiet moment does
        warm = []
        for k in range(max(1, args.warm_bursts)):
            if k:
                time.sleep(args.burst_gap_s)
            warm.append(burst(server.url, args.burst, args.burst_audio_s, pid=server.proc.pid))
        res["bursts_warm"] = warm
        res["burst_warm"] = max(warm, key=lambda b: b.get("server_mib_peak") or 0)  # the peak VRAM one
        res["burst_warm_audio_s_per_s_median"] = statistics.median(b["audio_s_per_s"] for b in warm)
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
