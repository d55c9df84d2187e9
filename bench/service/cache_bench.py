"""The response cache and the provider proxy, measured in one run against their baselines (JSON).

- cache: the same request answered from the cache (hit) and synthesized by Piper (the same
  request with ``X-Voxgate-Cache: bypass``), interleaved; first byte and total, p50/p90;
- fallback: a stopped model that is slow to start (fallback_after_s 2) answered by Piper (the
  issue's "within 3 s"), and the same text sent to Piper directly;
- provider proxy: a small OpenAI-shaped speech request to a loopback fake of OpenAI's wire format
  (tests/manager/fake_providers.py) directly, and through the manager (runtime ``openai``, cache
  off), interleaved; the added milliseconds at p50.

    python bench/service/cache_bench.py [--n 200] [--n-synth 20] [--out bench/results/cache_bench.json]

Targets (issue 19): a hit's first byte <= 5 ms p50; the provider proxy <= 2 ms added at p50.
The client, the fake provider (a thread of this process), the manager and Piper share the machine's
cores; the figures say on what machine they were taken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "manager")]
PYTHONPATH = os.pathsep.join([str(ROOT / "manager"), str(ROOT / "tts-inference-server"), os.environ.get("PYTHONPATH", "")])

from bench.common.local_http import free_port, wait_http  # noqa: E402
from bench.service.manager_bench import cpu_seconds, pct  # noqa: E402
from bench.common.report import write_report  # noqa: E402
from bench.common.processes import stop_process  # noqa: E402
from fake_providers import FakeProviders  # noqa: E402

KEY = "sk-bench-provider-key"
SPEECH = {"model": "piper", "input": "The cache answers this sentence from disk.", "voice": "alloy", "response_format": "mp3"}
SMALL = {"model": "oai", "input": "Hi.", "voice": "alloy", "response_format": "mp3"}


def timed(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
          expect_cache: str | None = None) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", url, json=body, headers=headers or {}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.read()[:300]!r}")
        if expect_cache and r.headers.get("x-voxgate-cache") != expect_cache:
            raise RuntimeError(f"expected cache {expect_cache}, got {r.headers.get('x-voxgate-cache')}")
        for chunk in r.iter_raw():
            if first is None and chunk:
                first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values) * 1000, 3), "p90_ms": round(pct(values, 90) * 1000, 3),
            "min_ms": round(min(values) * 1000, 3), "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="provider requests per side, and cache hits")
    ap.add_argument("--n-synth", type=int, default=20, help="Piper syntheses (the cache's baseline)")
    ap.add_argument("--n-fallback", type=int, default=5, help="requests answered through a fallback chain")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voxgate-cache-bench-"))
    with FakeProviders(KEY, "unused") as fake:
        models = {"models": [
            {"id": "piper", "upstream_model": "piper", "idle_timeout_s": 3600,
             "runtime": {"type": "process", "command": ["{python}", "-m", "voxgate_server.cli", "--host", "{host}", "--port", "{port}"],
                         "port": free_port(), "environment": {"VOXGATE_LOG_LEVEL": "warning", "VOXGATE_ENGINES": "piper"}},
             "readiness": {"path": "/health", "json_field": "status", "json_value": "ok"}},
            {"id": "slow", "upstream_model": "piper", "fallback": ["piper"], "fallback_after_s": 2, "cache": "off",
             "start_timeout_s": 600, "hold_max_s": 600,
             "runtime": {"type": "process", "command": ["sh", "-c", "sleep 600 && exec {python} -m voxgate_server.cli --host {host} --port {port}"],
                         "port": free_port(), "stop_timeout_s": 1}},
            {"id": "oai", "upstream_model": "tts-1", "cache": "off", "concurrency": 8,
             "runtime": {"type": "openai", "base_url": fake.url + "/v1"}},
        ]}
        (tmp / "models.json").write_text(json.dumps(models))
        port, admin = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OPENAI_API_KEY": KEY, "VOXGATE_MANAGER_DATA_DIR": str(tmp / "data"),
               "VOXGATE_MANAGER_LOG_LEVEL": "warning", "VOXGATE_LOG_LEVEL": "warning"}
        log = open(tmp / "manager.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "voxgate_manager.cli", "--config", str(tmp / "models.json"),
                                 "--port", str(port), "--admin-port", str(admin), "--log-level", "warning"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health")
            with httpx.Client(timeout=120) as client:
                bypass = {"X-Voxgate-Cache": "bypass"}
                timed(client, f"{url}/v1/audio/speech", SPEECH, bypass)  # start Piper
                timed(client, f"{url}/v1/audio/speech", SPEECH, expect_cache="miss")  # store it
                synth_first, synth_total, hit_first, hit_total = [], [], [], []
                for _ in range(args.n_synth):
                    f, t = timed(client, f"{url}/v1/audio/speech", SPEECH, bypass, expect_cache="bypass")
                    synth_first.append(f)
                    synth_total.append(t)
                for _ in range(args.n):
                    f, t = timed(client, f"{url}/v1/audio/speech", SPEECH, expect_cache="hit")
                    hit_first.append(f)
                    hit_total.append(t)
                size = len(client.post(f"{url}/v1/audio/speech", json=SPEECH).content)
                # fallback: a model that takes 10 minutes to start, fallback_after_s 2, Piper (ready) behind it
                fb_total, fb_piper = [], []
                for i in range(args.n_fallback):
                    body = {**SPEECH, "model": "slow", "input": f"Fallback answer number {i}."}
                    t0 = time.perf_counter()
                    r = client.post(f"{url}/v1/audio/speech", json=body)
                    fb_total.append(time.perf_counter() - t0)
                    if r.status_code != 200 or r.headers.get("x-voxgate-model") != "piper":
                        raise RuntimeError(f"fallback: {r.status_code} {r.headers}")
                    fb_piper.append(timed(client, f"{url}/v1/audio/speech", {**body, "model": "piper"}, bypass)[1])
                # provider proxy: the fake directly (with the key the manager sends) vs through the manager
                for _ in range(20):
                    timed(client, f"{fake.url}/v1/audio/speech", SMALL, {"Authorization": f"Bearer {KEY}"})
                    timed(client, f"{url}/v1/audio/speech", SMALL)
                direct: list[float] = []
                via: list[float] = []
                cpu0 = cpu_seconds(proc.pid)
                for i in range(args.n):
                    order = ("direct", "manager") if i % 2 == 0 else ("manager", "direct")
                    for side in order:
                        if side == "direct":
                            direct.append(timed(client, f"{fake.url}/v1/audio/speech", SMALL, {"Authorization": f"Bearer {KEY}"})[1])
                        else:
                            via.append(timed(client, f"{url}/v1/audio/speech", SMALL)[1])
                manager_cpu_ms = (cpu_seconds(proc.pid) - cpu0) / args.n * 1000
                load = os.getloadavg()
        finally:
            stop_process(proc, 30)
            log.close()
    hit_p50 = statistics.median(hit_first) * 1000
    added = (statistics.median(via) - statistics.median(direct)) * 1000
    result = {
        "bench": "cache_bench",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 2) for x in load]},
        "cache": {"request": SPEECH, "answer_bytes": size, "hit_first_byte": summary(hit_first), "hit_total": summary(hit_total),
                  "piper_first_byte": summary(synth_first), "piper_total": summary(synth_total),
                  "speedup_total_p50": round(statistics.median(synth_total) / statistics.median(hit_total), 1)},
        "fallback": {"what": "a stopped model slow to start (fallback_after_s 2) answered by Piper, ready",
                     "total": summary(fb_total), "piper_direct_same_text_total": summary(fb_piper)},
        "provider_proxy": {"request": SMALL, "direct_total": summary(direct), "via_manager_total": summary(via),
                           "added_p50_ms": round(added, 3),
                           # the manager's own CPU per proxied request: its cost without the scheduling
                           # delays a busy machine adds to every extra hop (see load_average)
                           "manager_cpu_ms_per_request": round(manager_cpu_ms, 3)},
        "targets": {"hit_first_byte_p50_ms<=5": hit_p50 <= 5.0, "provider_proxy_added_p50_ms<=2": added <= 2.0,
                    "fallback_answer_p50_s<=3": statistics.median(fb_total) <= 3.0},
    }
    write_report(result, Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
