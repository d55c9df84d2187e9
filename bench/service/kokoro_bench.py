"""CPU benchmark: Kokoro (the engine in-process and over HTTP) next to Piper, in one run.

For a short (1 sentence) and a longer (about 400 characters) text it measures time to first
audio and the real-time factor (wall time / audio seconds), plus CPU seconds per audio second
(process time, all threads; not moved by other load on the box), with Piper measured the same
way in the same run as the baseline. Writes JSON (and prints it):

    python bench/service/kokoro_bench.py --out bench/results/kokoro_bench.json [--repeats 3] [--http]

Engine direct: ``engine.synthesize`` on the server's own chunks (first chunk = first sentence).
HTTP (``--http``): ``POST /v1/audio/speech`` streamed as ``pcm`` from a voxgate-server child with
both engines, one request at a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tts-inference-server"))
sys.path.insert(0, str(ROOT / "tests"))

from voxgate_server.engines.base import Engine, SynthesisRequest  # noqa: E402
from voxgate_server.settings import Settings  # noqa: E402
from voxgate_server.text import chunk_text  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.common.report import write_report  # noqa: E402

TEXTS = {
    "short": "The birch canoe slid on the smooth planks.",
    "long": ("Voxgate turns text into speech for every device in the house. It streams audio as soon as the "
             "first sentence is ready, so a reply starts at once. Long answers are read sentence by sentence. "
             "Glue the sheet to the dark blue background. It is easy to tell the depth of a well. These days "
             "a chicken leg is a rare dish. Rice is often served in round bowls."),
}


def engine_once(engine: Engine, text: str, voice: str) -> dict[str, float]:
    chunks = chunk_text(text, engine.capabilities().max_chunk_chars)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    first = None
    seconds = 0.0
    for chunk in engine.synthesize(SynthesisRequest(chunks=chunks, voice=voice)):
        if first is None:
            first = time.perf_counter() - wall0
        seconds += chunk.samples.size / chunk.sample_rate
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"first_audio_s": first or wall, "wall_s": wall, "audio_s": seconds, "rtf": wall / seconds,
            "cpu_s_per_audio_s": cpu / seconds}


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 4) for key in runs[0]}


def bench_engines(repeats: int) -> dict[str, object]:
    from voxgate_server.engines.kokoro.engine import KokoroEngine
    from voxgate_server.engines.piper import PiperEngine

    out: dict[str, object] = {}
    for name, engine, voice in (("piper", PiperEngine(Settings()), "joe"), ("kokoro", KokoroEngine(Settings()), None)):
        t0 = time.perf_counter()
        engine.load()
        load_s = time.perf_counter() - t0
        voice = voice or engine.default_voice()
        engine_once(engine, "Warm up.", voice)
        out[name] = {"load_s": round(load_s, 3), "voice": voice,
                     **{label: summarize([engine_once(engine, text, voice) for _ in range(repeats)])
                        for label, text in TEXTS.items()}}
        engine.close()
    return out


def http_once(url: str, model: str, text: str) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    size = 0
    with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=300,
                      json={"model": model, "voice": "alloy", "input": text, "response_format": "pcm"}) as r:
        r.raise_for_status()
        for part in r.iter_bytes():
            if part and first is None:
                first = time.perf_counter() - t0
            size += len(part)
    wall = time.perf_counter() - t0
    audio = size / 2 / 24000
    return {"first_audio_s": first or wall, "wall_s": wall, "audio_s": audio, "rtf": wall / audio}


def bench_http(repeats: int) -> dict[str, object]:
    from conftest import ServerProcess

    with tempfile.TemporaryDirectory() as cache:
        server = ServerProcess({"VOXGATE_ENGINES": "piper,kokoro", "KOKORO_JA_CACHE": cache,
                                "VOXGATE_CONCURRENCY": "1"}, ready_timeout=300)
        try:
            while any(e["state"] != "ready" for e in httpx.get(f"{server.url}/health").json()["engines"].values()):
                time.sleep(0.2)
            out: dict[str, object] = {}
            for model in ("piper", "kokoro"):
                http_once(server.url, model, "Warm up.")
                out[model] = {label: summarize([http_once(server.url, model, text) for _ in range(repeats)])
                              for label, text in TEXTS.items()}
            return out
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--http", action="store_true", help="also over HTTP (a server child process)")
    args = parser.parse_args()
    os.environ.setdefault("KOKORO_JA_CACHE", tempfile.mkdtemp(prefix="kokoro-bench-"))
    result: dict[str, object] = {
        "bench": "kokoro_bench",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_at_start": os.getloadavg()},
        "texts": {k: len(v) for k, v in TEXTS.items()},
        "repeats": args.repeats,
        "engine_direct": bench_engines(args.repeats),
    }
    if args.http:
        result["http"] = bench_http(args.repeats)
    result["load_avg_at_end"] = os.getloadavg()
    write_report(result, args.out)


if __name__ == "__main__":
    main()
