"""A real voxgate-server with Chatterbox Turbo on CUDA, as the park and launch benches drive it.

``Server`` starts ``python -m voxgate_server.cli`` with the shipped engine defaults on the
random-weight checkpoint and times the server's own log lines as they arrive (``STAGES``);
``speak`` streams the clip every GPU bench speaks; ``burst`` sends many at once (with
nvidia-smi's reading of the server sampled meanwhile); ``park_detail`` is the engine's park
state from ``/health``.
"""

from __future__ import annotations

import argparse
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

from bench.common.local_http import free_port, stream_speech
from bench.common.processes import stop_process
from bench.turbo.turbo_clip import SR, TEXT  # the clip every GPU bench speaks

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
        stop_process(self.proc, 20)


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
