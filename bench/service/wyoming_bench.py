"""Wyoming's first audio chunk vs HTTP's first audio byte, the same sentence through the same
manager and the same Piper server, interleaved request by request (JSON on stdout).

    python bench/service/wyoming_bench.py [--n 40] [--out bench/results/wyoming.json]

HTTP: ``POST /v1/audio/speech`` with ``response_format: pcm`` on a kept-alive connection, time to
the first body byte. Wyoming: ``synthesize`` on an open connection, time to the first
``audio-chunk`` event (what a Home Assistant satellite starts playing); and the same with a new
connection per request (``wyoming_connect_first``), as Home Assistant's client connects per
utterance. Target (issue 18): Wyoming within 10 % or 5 ms of HTTP, whichever is larger.
"""

from __future__ import annotations

import argparse
import asyncio
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
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeVoice

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.common.local_http import free_port, wait_http
from bench.common.report import write_report
from bench.common.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(ROOT / "manager"), str(ROOT / "tts-inference-server"), os.environ.get("PYTHONPATH", "")])
SENTENCE = "The kitchen lights are now on, and the front door is locked."


async def http_first(client: httpx.AsyncClient, url: str) -> float:
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", url, json={"model": "piper", "input": SENTENCE, "voice": "joe", "response_format": "pcm"}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}")
        async for chunk in r.aiter_raw():
            if first is None and chunk:
                first = time.perf_counter() - t0
    assert first is not None
    return first


async def wyoming_first(client: AsyncTcpClient) -> float:
    t0 = time.perf_counter()
    await client.write_event(Synthesize(text=SENTENCE, voice=SynthesizeVoice(name="piper:joe")).event())
    first = None
    while True:
        ev = await client.read_event()
        if ev is None:
            raise RuntimeError("Wyoming connection closed")
        if ev.type == "error":
            raise RuntimeError(f"Wyoming error: {ev.data}")
        if ev.type == "audio-chunk" and first is None:
            first = time.perf_counter() - t0
        if ev.type == "audio-stop":
            assert first is not None
            return first


async def wyoming_connect_first(port: int) -> float:
    t0 = time.perf_counter()
    c = AsyncTcpClient("127.0.0.1", port)
    await c.connect()
    try:
        connected = time.perf_counter() - t0
        return connected + await wyoming_first(c)
    finally:
        await c.disconnect()


async def measure(url: str, wport: int, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"http": [], "wyoming": [], "wyoming_connect": []}
    async with httpx.AsyncClient(timeout=60) as http:
        wy = AsyncTcpClient("127.0.0.1", wport)
        await wy.connect()
        for _ in range(5):  # warm both paths (model, connections, onnxruntime)
            await http_first(http, url)
            await wyoming_first(wy)
        for i in range(n):  # interleaved, alternating which goes first
            order = ("http", "wyoming", "wyoming_connect") if i % 2 == 0 else ("wyoming_connect", "wyoming", "http")
            for side in order:
                if side == "http":
                    out[side].append(await http_first(http, url))
                elif side == "wyoming":
                    out[side].append(await wyoming_first(wy))
                else:
                    out[side].append(await wyoming_connect_first(wport))
        await wy.disconnect()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40, help="requests per side")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voxgate-wyoming-bench-"))
    mport, aport, pport, wport = free_port(), free_port(), free_port(), free_port()
    models = [{"id": "piper", "runtime": {"type": "process", "port": pport,
                                          "command": ["{python}", "-m", "voxgate_server.cli", "--host", "{host}", "--port", "{port}"],
                                          "environment": {"VOXGATE_LOG_LEVEL": "warning", "VOXGATE_ENGINES": "piper"}},
               "readiness": {"json_field": "status", "json_value": "ok"}}]
    (tmp / "models.json").write_text(json.dumps({"models": models}))
    # the accounts store in the run's own folder, not ./data wherever the bench was started
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VOXGATE_WYOMING_PORT": str(wport),
           "VOXGATE_MANAGER_APP_DIR": str(tmp / "app")}
    proc = subprocess.Popen([sys.executable, "-m", "voxgate_manager.cli", "--config", str(tmp / "models.json"), "--port", str(mport),
                             "--admin-port", str(aport), "--log-level", "warning"],
                            env=env, stdout=open(tmp / "manager.log", "wb"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{mport}"
        wait_http(f"{url}/health")
        r = httpx.post(f"{url}/v1/audio/speech", json={"model": "piper", "input": "Hi.", "voice": "joe", "response_format": "pcm"}, timeout=120)
        r.raise_for_status()  # started
        samples = asyncio.run(measure(f"{url}/v1/audio/speech", wport, args.n))
    finally:
        stop_process(proc, 30)

    def ms(v: float) -> float:
        return round(v * 1000, 2)

    h, w, wc = (statistics.median(samples[k]) for k in ("http", "wyoming", "wyoming_connect"))
    paired = statistics.median(b - a for a, b in zip(samples["http"], samples["wyoming"]))
    allowed = max(0.10 * h, 0.005)
    result: dict[str, Any] = {
        "bench": "wyoming",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "sentence": SENTENCE, "n": args.n,
        "http_first_byte_ms": {"p50": ms(h), "p90": ms(sorted(samples["http"])[int(0.9 * (args.n - 1))])},
        "wyoming_first_chunk_ms": {"p50": ms(w), "p90": ms(sorted(samples["wyoming"])[int(0.9 * (args.n - 1))])},
        "wyoming_connect_first_chunk_ms": {"p50": ms(wc)},
        "wyoming_minus_http_ms": {"p50_difference": ms(w - h), "paired_median": ms(paired)},
        "ratio": round(w / h, 3),
        "target": "Wyoming first chunk within max(10 % of HTTP, 5 ms) of HTTP first byte",
        "allowed_ms": ms(allowed),
        "met": (w - h) <= allowed,
        "samples_ms": {k: [ms(v) for v in vs] for k, vs in samples.items()},
    }
    write_report(result, Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
