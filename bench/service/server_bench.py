"""CPU benchmark: the Piper engine called directly against the same work through voxgate's HTTP API.

For a 200- and a 2000-character input, at 1 and 4 concurrent clients, it measures time to first
audio and real-time factor (wall time / audio seconds), in one run, and writes JSON (and a
Markdown table) so the HTTP overhead can be read off against its own baseline:

    python bench/service/server_bench.py --out bench/results/server_bench.json

Engine direct = ``engine.synthesize`` on the server's own text chunks (first chunk = first
sentence), in threads. HTTP = ``POST /v1/audio/speech`` streamed from a voxgate-server child
process with the same settings (``pcm``, so no codec cost; ``--formats`` adds others).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tts-inference-server"))
sys.path.insert(0, str(ROOT / "tests"))

from voxgate_server.engines.base import SynthesisRequest  # noqa: E402
from voxgate_server.engines.piper import PiperEngine  # noqa: E402
from voxgate_server.settings import Settings  # noqa: E402
from voxgate_server.text import chunk_text  # noqa: E402

BASE = ("Voxgate turns text into speech for every device in the house. It streams audio as soon as the first "
        "sentence is ready, so a reply starts at once. Long answers are read sentence by sentence. ")


def make_text(n: int) -> str:
    return (BASE * (n // len(BASE) + 1))[:n].rsplit(" ", 1)[0] + "."


def engine_once(engine: PiperEngine, text: str) -> dict[str, float]:
    chunks = chunk_text(text, engine.capabilities().max_chunk_chars)
    start = time.perf_counter()
    first = None
    samples = 0
    rate = 22050
    for chunk in engine.synthesize(SynthesisRequest(chunks=chunks, voice="joe")):
        if first is None:
            first = time.perf_counter() - start
        samples += chunk.samples.size
        rate = chunk.sample_rate
    wall = time.perf_counter() - start
    return {"ttfa_s": first or wall, "wall_s": wall, "audio_s": samples / rate}


def http_once(url: str, text: str, fmt: str) -> dict[str, float]:
    start = time.perf_counter()
    first = None
    size = 0
    with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=600,
                      json={"model": "piper", "voice": "alloy", "input": text, "response_format": fmt}) as r:
        r.raise_for_status()
        for part in r.iter_raw():
            if part and first is None:
                first = time.perf_counter() - start
            size += len(part)
    wall = time.perf_counter() - start
    out = {"ttfa_s": first or wall, "wall_s": wall}
    if fmt == "pcm":
        out["audio_s"] = size / 2 / 24000
    return out


def run_concurrent(fn, clients: int, repeats: int) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        r = fn()
        with lock:
            results.append(r)

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(repeats):
            list(pool.map(one, range(clients)))
    return results


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    ttfa = [r["ttfa_s"] for r in rows]
    wall = [r["wall_s"] for r in rows]
    audio = [r.get("audio_s") for r in rows if r.get("audio_s")]
    out = {"n": len(rows), "ttfa_p50_s": statistics.median(ttfa), "wall_p50_s": statistics.median(wall)}
    if audio:
        out["audio_s"] = statistics.median(audio)
        out["rtf_p50"] = statistics.median(r["wall_s"] / r["audio_s"] for r in rows if r.get("audio_s"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench/results/server_bench.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", default="200,2000")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--formats", default="pcm", help="HTTP formats to measure (pcm is the like-for-like one)")
    args = parser.parse_args()

    env = {**os.environ, "VOXGATE_CONCURRENCY": "4", "VOXGATE_QUEUE_SIZE": "16", "VOXGATE_LOG_LEVEL": "warning"}
    settings = Settings(concurrency=4)
    engine = PiperEngine(settings)
    engine.load()

    from conftest import ServerProcess  # the tests' loopback server launcher

    os.environ.update({k: v for k, v in env.items() if k.startswith("VOXGATE_")})
    server = ServerProcess(env)
    rows = []
    try:
        for n in map(int, args.lengths.split(",")):
            text = make_text(n)
            first_sentence = chunk_text(text, 400)[0]
            engine_once(engine, text)  # warm
            http_once(server.url, text, "pcm")
            for clients in map(int, args.clients.split(",")):
                # Interleave the three measurements repeat by repeat, so drift in machine load
                # (shared CI or dev boxes) hits engine and HTTP alike.
                fmts = args.formats.split(",")
                eng_rows, first_rows, http_rows = [], [], {f: [] for f in fmts}
                for _ in range(args.repeats):
                    eng_rows += run_concurrent(lambda: engine_once(engine, text), clients, 1)
                    first_rows += run_concurrent(lambda: engine_once(engine, first_sentence), clients, 1)
                    for fmt in fmts:
                        http_rows[fmt] += run_concurrent(lambda: http_once(server.url, text, fmt), clients, 1)
                eng, first = summarize(eng_rows), summarize(first_rows)
                row = {"chars": len(text), "clients": clients, "engine": eng, "engine_first_sentence_wall_p50_s": first["wall_p50_s"]}
                for fmt in fmts:
                    h = summarize(http_rows[fmt])
                    row[f"http_{fmt}"] = h
                    row[f"http_{fmt}_overhead_pct"] = 100 * (h["wall_p50_s"] - eng["wall_p50_s"]) / eng["wall_p50_s"]
                    row[f"http_{fmt}_ttfa_vs_engine_first_sentence"] = h["ttfa_p50_s"] / first["wall_p50_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
        "targets": {"http_overhead_pct_max": 10, "http_ttfa_vs_engine_first_sentence_max": 2.0},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    lines = ["| chars | clients | engine TTFA | engine 1st sentence | engine RTF | HTTP TTFA | HTTP RTF | HTTP overhead | TTFA ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r["http_pcm"]
        lines.append(f"| {r['chars']} | {r['clients']} | {r['engine']['ttfa_p50_s']*1000:.0f} ms | "
                     f"{r['engine_first_sentence_wall_p50_s']*1000:.0f} ms | {r['engine']['rtf_p50']:.3f} | "
                     f"{h['ttfa_p50_s']*1000:.0f} ms | {h['rtf_p50']:.3f} | {r['http_pcm_overhead_pct']:+.1f}% | "
                     f"{r['http_pcm_ttfa_vs_engine_first_sentence']:.2f}x |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
