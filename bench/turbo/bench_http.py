"""HTTP phase of the GPU bench: the voxgate server with the chatterbox-turbo engine.

Starts ``python -m voxgate_server.cli`` on loopback with the random checkpoint, waits for
/health, then streams ``/v1/audio/speech`` (response_format=pcm: 24 kHz 16-bit mono, no
encoder cost in the figures) and measures time to the first audio byte, the whole clip, and
aggregate audio seconds per second with 1/4/16 clients at once. Peak VRAM is what nvidia-smi
reports for the server process (CUDA context included), sampled every 100 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.turbo.gpu_common import launch_timeline, log, run_at_once, smi_process_mib
from bench.common.local_http import free_port, stream_speech
from bench.common.processes import stop_process
from bench.turbo.turbo_clip import SR, TEXT

REPO = Path(__file__).resolve().parents[2]


def _pyspy_under_load(pid: int, out: str, burst: Any, seconds: float = 8.0) -> dict[str, Any]:
    """Sample the server with py-spy (``--gil``: only the thread holding the GIL, so the samples
    say where the interpreter's one lock goes) while bursts of 16 requests run back to back;
    writes collapsed stacks to ``out``. py-spy comes from the carried wheels (``PYSPY``)."""
    exe = os.environ.get("PYSPY", "py-spy")
    rec = subprocess.Popen([exe, "record", "--gil", "--nonblocking", "--format", "raw", "-r", "250",
                            "-d", str(int(seconds)), "-p", str(pid), "-o", out],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    walls = []
    t_end = time.perf_counter() + seconds - 1.0
    while time.perf_counter() < t_end:
        walls.append(round(burst(), 3))
    log_text = rec.communicate(timeout=60)[0]
    return {"bursts_wall_s": walls, "rc": rec.returncode, "log": log_text[-1500:]}


def http_timeline(clients: list[dict[str, float]], server: dict[str, Any]) -> dict[str, Any]:
    """One traced burst, in ms from its release, each column sorted on its own (requests carry no
    id across the socket): the clients' sends, the app's receipts, the engine's calls for tokens,
    T3's submits, first and last tokens, the clients' first bytes and ends; T3's prefills and step
    gaps; the S3Gen calls; the server's garbage collections."""
    origin = min(c["t0_abs"] for c in clients)

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - origin) * 1000, 1)

    def col(xs: list[float | None]) -> list[float | None]:
        return sorted((ms(x) for x in xs), key=lambda v: (v is None, v))

    streams = server.get("streams", [])
    return {
        "wall_ms": ms(max(c["end_abs"] for c in clients)),
        "client_send_ms": col([c["t0_abs"] for c in clients]),
        "app_receipt_ms": col(server.get("arrivals", [])),
        "engine_call_ms": col([s[4] for s in streams]),
        "t3_submit_ms": col([s[0] for s in streams]),
        "t3_first_token_ms": col([s[1] for s in streams]),
        "t3_last_token_ms": col([s[2] for s in streams]),
        "client_first_byte_ms": col([c["first_abs"] for c in clients]),
        "client_end_ms": col([c["end_abs"] for c in clients]),
        "tokens": sorted(s[3] for s in streams),
        **launch_timeline(server.get("steps", []), server.get("calls", []), ms),
        # the server's garbage collections (all passes; listed: gen 1-2 or >= 1 ms): start ms, gen, ms
        "gc_passes": len(server.get("gc", [])),
        "gc": [[ms(t), gen, round(d * 1000, 2)] for t, gen, d in server.get("gc", []) if gen or d >= 1e-3],
    }


def _uvicorn_impl(env: dict[str, str], traced: bool) -> dict[str, str]:
    """The event loop and HTTP parser the server's uvicorn runs ("auto" takes uvloop and
    httptools when they import, as in the image)."""
    def importable(mod: str) -> bool:
        return subprocess.run([sys.executable, "-c", f"import {mod}"], env=env, capture_output=True).returncode == 0

    loop = os.environ.get("UVICORN_LOOP", "auto") if traced else "auto"
    http = os.environ.get("UVICORN_HTTP", "auto") if traced else "auto"
    return {"loop": ("uvloop" if importable("uvloop") else "asyncio") if loop == "auto" else loop,
            "http": ("httptools" if importable("httptools") else "h11") if http == "auto" else http}


class VramSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_mib = 0
        self.peak_total_mib = 0
        self.load_peak_mib: int | None = None  # the peak up to ``mark_ready()``
        self.stop = threading.Event()
        self.error: str | None = None

    def mark_ready(self) -> None:
        """The server is ready: keep the peak so far as the load's, and count afresh."""
        self.load_peak_mib, self.peak_mib = self.peak_mib, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                mem = smi_process_mib(self.pid)
                if mem is not None:
                    self.peak_mib = max(self.peak_mib, mem)
                tot = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.peak_total_mib = max(self.peak_total_mib, int(tot.strip().splitlines()[0]))
            except Exception as exc:  # noqa: BLE001
                self.error = repr(exc)
            self.stop.wait(0.1)


def wait_for_warmup(base: str, engine: str, timeout_s: float) -> tuple[dict[str, Any] | None, float | None]:
    """The engine's background warm-up as /health reports it once it is no longer running, and
    the seconds waited (None: still running after ``timeout_s``; no ``warmup``: nothing to wait for)."""
    t0 = time.perf_counter()
    warmup: dict[str, Any] | None = None
    while time.perf_counter() - t0 < timeout_s:
        warmup = httpx.get(base + "/health", timeout=10).json().get("engines", {}).get(engine, {}).get("warmup")
        if warmup is None or warmup.get("state") != "running":
            return warmup, round(time.perf_counter() - t0, 2)
        time.sleep(0.25)
    return warmup, None


def phase_http(args: Any) -> dict[str, Any]:
    port = free_port()
    env = dict(os.environ)
    env.update({
        "VOXGATE_ENGINES": "chatterbox-turbo",
        "VOXGATE_HOST": "127.0.0.1",
        "VOXGATE_PORT": str(port),
        "VOXGATE_LOG_LEVEL": "warning",
        "VOXGATE_CONCURRENCY": str(args.max_batch),
        "VOXGATE_QUEUE_SIZE": "64",
        "VOXGATE_CHATTERBOX_CHECKPOINT_DIR": args.ckpt,
        "VOXGATE_CHATTERBOX_DEVICE": "cuda",
        "VOXGATE_CHATTERBOX_FAST": "on",
        "VOXGATE_CHATTERBOX_MAX_BATCH": str(args.max_batch),
        "VOXGATE_CHATTERBOX_MAX_LEN": str(args.max_len),
        "VOXGATE_VOICES_DIR": str(Path(args.out) / "voices"),
        "HF_HUB_OFFLINE": "1",
    })
    t_start = time.perf_counter()
    traced = bool(os.environ.get("HTTP_TRACE"))  # the server with a bench-only trace route
    cmd = [sys.executable, str(REPO / "bench" / "turbo" / "http_trace_server.py")] if traced else [
        sys.executable, "-m", "voxgate_server.cli"]
    proc = subprocess.Popen(cmd, env=env,
                            stdout=open(Path(args.out) / "http_server.log", "w"), stderr=subprocess.STDOUT)
    vram = VramSampler(proc.pid)
    vram.start()
    base = f"http://127.0.0.1:{port}"
    res: dict[str, Any] = {}
    try:
        health: dict[str, Any] = {}
        while time.perf_counter() - t_start < 300:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                r = httpx.get(base + "/health", timeout=2)
                health = r.json()
                if r.status_code == 200 or health.get("status") == "failed":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        res["health"] = health
        res["uvicorn"] = _uvicorn_impl(env, traced)
        res["ready_after_s"] = round(time.perf_counter() - t_start, 2)
        vram.mark_ready()
        res["load_s"] = health.get("engines", {}).get("chatterbox-turbo", {}).get("load_seconds")
        if health.get("status") != "ok":
            raise RuntimeError(f"server not ready: {health}")
        body = {"model": "chatterbox-turbo", "input": TEXT, "voice": "alloy", "response_format": "pcm",
                "max_duration_s": (args.tokens + 1) / 25.0}

        def one_abs(client: httpx.Client) -> dict[str, float]:
            t0, first, end, n = stream_speech(client, base, body, 120)
            return {"t0_abs": t0, "first_abs": first, "end_abs": end, "audio_s": n / 2 / SR}

        def one(client: httpx.Client) -> dict[str, float]:
            m = one_abs(client)
            return {"first_audio_s": m["first_abs"] - m["t0_abs"], "total_s": m["end_abs"] - m["t0_abs"],
                    "audio_s": m["audio_s"]}

        with httpx.Client() as c:
            # at ready the server already serves, while S3Gen's graphs are captured and the
            # warm-up burst runs in the background: what the first users meet, not the steady state
            at_ready = [one(c) for _ in range(3)]
            res["one_stream_at_ready"] = [{k: round(v, 4) for k, v in r.items()} for r in at_ready]
            res["warmup"], res["warmup_wait_s"] = wait_for_warmup(base, "chatterbox-turbo", 300)
            log("http background warm-up", res["warmup_wait_s"], json.dumps(res["warmup"]))
            one(c)  # warm
            runs = [one(c) for _ in range(args.runs)]
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        res["one_stream_runs"] = [{k: round(v, 4) for k, v in r.items()} for r in runs]
        res["rtf_median"] = round(med([r["total_s"] / r["audio_s"] for r in runs]), 4)
        res["first_audio_s_median"] = round(med([r["first_audio_s"] for r in runs]), 4)
        res["audio_s"] = round(runs[-1]["audio_s"], 3)

        def burst(c_n: int) -> tuple[list[dict[str, float]], list[str], float, dict[str, Any] | None]:
            """c_n clients at once, each on a fresh connection; with the trace, its timeline."""
            if traced:
                httpx.post(base + "/bench/trace", timeout=10).raise_for_status()
            clients = [httpx.Client() for _ in range(c_n)]
            try:
                marks, errors, wall = run_at_once(c_n, lambda i: one_abs(clients[i]))
            finally:
                for cl in clients:
                    cl.close()
            server = httpx.get(base + "/bench/trace", timeout=30).json() if traced else None  # disarms
            timeline = http_timeline(marks, server) if server is not None and marks else None
            return marks, errors, wall, timeline

        conc = {}
        for c_n in args.concurrency:
            marks, errors, wall, timeline = burst(c_n)
            audio = sum(m["audio_s"] for m in marks)
            conc[str(c_n)] = {"wall_s": round(wall, 3), "audio_s": round(audio, 2),
                              "audio_s_per_s": round(audio / wall, 2), "errors": errors[:3],
                              "first_audio_s_median": round(med([m["first_abs"] - m["t0_abs"] for m in marks]), 4)
                              if marks else None}
            log("http concurrency", c_n, conc[str(c_n)])
            if timeline is not None:
                conc[str(c_n)]["timeline"] = timeline
                log("http timeline", c_n, json.dumps(timeline))
        res["concurrency"] = conc
        # two more bursts at the highest concurrency, to compare with the first one (a single
        # burst's figure moves 5-10% from burst to burst, and the first to a fresh server is slower)
        again = []
        for _ in range(2):
            marks, errors, wall, timeline = burst(max(args.concurrency))
            line = {"audio_s_per_s": round(sum(m["audio_s"] for m in marks) / wall, 2), "errors": errors[:3],
                    "timeline": timeline}
            again.append(line)
            log("http burst again", max(args.concurrency), json.dumps(line))
        res["bursts_again"] = again
        top = conc[str(max(args.concurrency))]
        top["audio_s_per_s_bursts"] = [top["audio_s_per_s"], *(line["audio_s_per_s"] for line in again)]
        top["audio_s_per_s_median"] = round(statistics.median(top["audio_s_per_s_bursts"]), 2)
        spy_out = os.environ.get("PYSPY_OUT")  # where the GIL's time goes in the server under load
        if spy_out:
            def fresh(_: int) -> dict[str, float]:
                with httpx.Client() as cl:
                    return one(cl)

            res["pyspy"] = _pyspy_under_load(proc.pid, spy_out, lambda: run_at_once(16, fresh)[2])
    except Exception as exc:  # noqa: BLE001
        res["error"] = repr(exc)
    finally:
        vram.stop.set()
        vram.join(2)
        stop_process(proc, 20)
    # while serving (the "VRAM at 16 concurrent"), and while loading
    res["peak_vram_gib"] = round(vram.peak_mib / 1024, 3)
    if vram.load_peak_mib is not None:
        res["peak_vram_load_gib"] = round(vram.load_peak_mib / 1024, 3)
    res["peak_gpu_used_gib"] = round(vram.peak_total_mib / 1024, 3)
    if vram.error:
        res["vram_sampler_error"] = vram.error
    return res
