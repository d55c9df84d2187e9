#!/usr/bin/env python3
"""Chatterbox Turbo on one GPU: upstream ``generate()`` against voxgate's fast engine.

Same random-weight checkpoint, same text, same number of speech tokens, same run. Each phase
runs in its own process so that peak VRAM is the phase's own:

  upstream  ChatterboxTurboTTS.from_local + generate() (capped at --tokens), greedy tokens
  fast      voxgate's FastTurbo in-process: greedy token equality with upstream (fp32 and
            bf16), RTF of one stream, time to first audio, aggregate audio s/s at 1/4/16
            concurrent requests, peak VRAM
  http      the voxgate server (chatterbox-turbo engine) over HTTP: load time, time to first
            audio byte, RTF, aggregate at 1/4/16, peak VRAM (nvidia-smi of the server process)

    python bench/turbo/gpu_turbo_bench.py all --ckpt CKPT --out bench/results [--tokens 250]

Writes OUT/gpu_turbo_bench.json and OUT/gpu_turbo_bench.md. ``bench/run_gpu_bench.sh`` is the
one command for a bare GPU machine (wheels, checkpoint, this script).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tts-inference-server"))

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.turbo.gpu_common import log, prefix_match, run_at_once, time_clip, vram_breakdown  # noqa: E402
from bench.turbo.turbo_clip import SR, TEXT  # noqa: E402  (names of this module too, as other benches read them)

# extra texts for the batched greedy check
TEXTS_B = [
    "Please remember that the office will be closed on Monday for the public holiday.",
    "Could you read the last paragraph aloud, slowly, so that everyone can follow along?",
]


def cuda_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_upstream(ckpt: str, device: str) -> tuple[Any, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    t0 = time.perf_counter()
    model = ChatterboxTurboTTS.from_local(ckpt, device=device)
    cuda_sync()
    return model, time.perf_counter() - t0


def greedy_upstream(model: Any, text: str, n: int) -> list[int]:
    """Upstream's own T3.inference_turbo with top_k=1 (other processors at generate()'s defaults)."""
    import copy

    import torch
    from chatterbox.tts_turbo import punc_norm

    ids = model.tokenizer(punc_norm(text), return_tensors="pt", truncation=True).input_ids.to(model.device)
    cond = copy.copy(model.conds.t3)
    with torch.inference_mode():
        toks = model.t3.inference_turbo(cond, ids, temperature=0.8, top_k=1, top_p=0.95,
                                        repetition_penalty=1.2, max_gen_len=n)
    return [int(t) for t in toks[0].tolist()]


# ---------------------------------------------------------------------------------------------
def phase_upstream(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    model, load_s = load_upstream(args.ckpt, "cuda")
    n = args.tokens
    orig = model.t3.inference_turbo
    model.t3.inference_turbo = functools.partial(orig, max_gen_len=n)
    res: dict[str, Any] = {"load_s": round(load_s, 2), "text_chars": len(TEXT), "max_gen_len": n}
    t0 = time.perf_counter()
    wav = model.generate(TEXT)
    cuda_sync()
    res["cold_generate_s"] = round(time.perf_counter() - t0, 3)
    torch.cuda.reset_peak_memory_stats()
    runs = []
    for _ in range(args.runs):
        cuda_sync()
        t0 = time.perf_counter()
        wav = model.generate(TEXT)
        cuda_sync()
        dt = time.perf_counter() - t0
        audio = wav.shape[-1] / SR
        runs.append({"generate_s": round(dt, 3), "audio_s": round(audio, 3), "rtf": round(dt / audio, 4)})
    res["runs"] = runs
    res["audio_s"] = runs[-1]["audio_s"]
    res["rtf_median"] = sorted(r["rtf"] for r in runs)[len(runs) // 2]
    res["first_audio_s_median"] = sorted(r["generate_s"] for r in runs)[len(runs) // 2]  # no streaming
    res["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    res["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    # concurrency: upstream serves one request at a time (generate() mutates model state)
    lock = threading.Lock()
    conc = {}
    for c in args.upstream_concurrency:

        def one_generate(_: int) -> float:
            with lock:
                w = model.generate(TEXT)
                cuda_sync()
                return w.shape[-1] / SR

        clips, _, wall = run_at_once(c, one_generate)
        audio_total = sum(clips)
        conc[str(c)] = {"wall_s": round(wall, 3), "audio_s": round(audio_total, 2),
                        "audio_s_per_s": round(audio_total / wall, 2)}
    res["concurrency"] = conc
    # greedy reference tokens for the equality check
    model.t3.inference_turbo = orig
    t0 = time.perf_counter()
    res["greedy"] = {"text": greedy_upstream(model, TEXT, n)}
    for i, t in enumerate(TEXTS_B):
        res["greedy"][f"b{i}"] = greedy_upstream(model, t, args.tokens_b)
    res["greedy_s"] = round(time.perf_counter() - t0, 2)
    return res


# ---------------------------------------------------------------------------------------------
def phase_fast(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder, FastTurbo, SamplingParams

    ref = json.loads(Path(args.upstream_json).read_text()) if args.upstream_json else None
    model, load_s = load_upstream(args.ckpt, "cuda")
    n = args.tokens
    res: dict[str, Any] = {"load_s": round(load_s, 2)}
    greedy = SamplingParams(temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2)

    # 1. greedy equality: fp32 (graphs) and bf16 (graphs), alone and batched
    if ref is not None:
        eq: dict[str, Any] = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            dec = BatchedT3Decoder(model.t3, dtype=dtype, max_batch=4, max_len=1024).start()
            alone = dec.submit(model.conds.t3, _ids(model, TEXT), greedy, n + 1).result(600)
            streams = [dec.submit(model.conds.t3, _ids(model, TEXT), greedy, n + 1)]
            streams += [dec.submit(model.conds.t3, _ids(model, t), greedy, args.tokens_b + 1) for t in TEXTS_B]
            batched = [s.result(600) for s in streams]
            want = [ref["greedy"]["text"]] + [ref["greedy"][f"b{i}"] for i in range(len(TEXTS_B))]
            eq[name] = {
                "alone_equal": alone == want[0],
                "alone_prefix_match": prefix_match(alone, want[0]),
                "batched_equal": [b == w for b, w in zip(batched, want)],
                "batched_prefix_match": [prefix_match(b, w) for b, w in zip(batched, want)],
                "lengths": [len(w) for w in want],
                "fused_step": dec.fused,
            }
            dec.close()
            del dec
            torch.cuda.empty_cache()
        res["greedy_equality"] = eq
        log("greedy equality", json.dumps(eq))

    # 2. the engine's fast path (bf16, graphs, batching, streaming)
    from voxgate_server.engines.chatterbox_fast.engine import FastSettings

    fs = FastSettings()  # the engine's defaults (environment included), as the server runs them
    ft = FastTurbo(model, **{**fs.turbo_kwargs(), "max_batch": args.max_batch, "max_len": args.max_len}).start()
    torch.cuda.empty_cache()
    res["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    res["s3gen_attention"] = fs.s3gen_attention
    res["s3gen_graph_batch"] = fs.s3gen_graph_batch
    # the warm-up the server runs at start-up (engine.load), burst of MAX_BATCH included
    res["warmup_burst_tokens"] = fs.warmup_burst_tokens
    res["vram_before_warmup"] = vram_breakdown(torch)
    res["warmup_s"] = round(ft.warmup(burst=args.max_batch if fs.warmup_burst_tokens else 0,
                                      burst_tokens=fs.warmup_burst_tokens), 2)
    res["vram_after_warmup"] = vram_breakdown(torch)
    torch.cuda.reset_peak_memory_stats()

    # T3 alone, one stream
    t0 = time.perf_counter()
    toks = ft.tokens(TEXT, max_new_tokens=n + 1).result(600)
    t3_s = time.perf_counter() - t0
    res["t3_one_stream"] = {"tokens": len(toks), "seconds": round(t3_s, 4),
                            "ms_per_token": round(1000 * t3_s / len(toks), 3)}

    def one_clip() -> dict[str, float]:
        return time_clip(ft.stream(TEXT, max_new_tokens=n + 1), SR)

    runs = [one_clip() for _ in range(args.runs)]
    res["one_stream_runs"] = [{k: round(v, 4) for k, v in r.items()} for r in runs]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    res["rtf_median"] = round(med([r["total_s"] / r["audio_s"] for r in runs]), 4)
    res["first_audio_s_median"] = round(med([r["first_audio_s"] for r in runs]), 4)
    res["audio_s"] = round(runs[-1]["audio_s"], 3)
    res["one_stream_chunks"] = [r["chunks"] for r in runs]
    res["one_stream_playback_stall_s_max"] = round(max(r["playback_stall_s"] for r in runs), 4)

    conc = {}
    for c in args.concurrency:
        results, _, wall = run_at_once(c, lambda _: one_clip())
        audio = sum(r["audio_s"] for r in results)
        conc[str(c)] = {"wall_s": round(wall, 3), "audio_s": round(audio, 2),
                        "audio_s_per_s": round(audio / wall, 2),
                        "first_audio_s_median": round(med([r["first_audio_s"] for r in results]), 4),
                        "first_audio_s_max": round(max(r["first_audio_s"] for r in results), 4),
                        "chunks_per_clip_mean": round(sum(r["chunks"] for r in results) / c, 2),
                        "playback_stall_s_max": round(max(r["playback_stall_s"] for r in results), 4)}
        log("concurrency", c, conc[str(c)])
    res["concurrency"] = conc
    # a single burst's figure moves 5-10% from burst to burst: two more at the top concurrency
    top = conc[str(max(args.concurrency))]
    again = []
    for _ in range(2):
        results, _, wall = run_at_once(max(args.concurrency), lambda _: one_clip())
        again.append(round(sum(r["audio_s"] for r in results) / wall, 2))
    top["audio_s_per_s_bursts"] = [top["audio_s_per_s"], *again]
    top["audio_s_per_s_median"] = round(statistics.median(top["audio_s_per_s_bursts"]), 2)
    # same run, same process: the previous fixed chunk schedule (12, x3 up to max_chunk) at the
    # highest concurrency, so the paced schedule's effect is measured against it directly
    c = max(args.concurrency)
    lead = ft.vocoder.lead_s
    ft.vocoder.lead_s = None
    results, _, wall = run_at_once(c, lambda _: one_clip())
    ft.vocoder.lead_s = lead
    audio = sum(r["audio_s"] for r in results)
    res["fixed_schedule"] = {"concurrency": c, "wall_s": round(wall, 3), "audio_s_per_s": round(audio / wall, 2),
                             "first_audio_s_median": round(med([r["first_audio_s"] for r in results]), 4),
                             "chunks_per_clip_mean": round(sum(r["chunks"] for r in results) / c, 2),
                             "playback_stall_s_max": round(max(r["playback_stall_s"] for r in results), 4)}
    log("fixed schedule", res["fixed_schedule"])
    res["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    res["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    res["vram_at_end"] = vram_breakdown(torch)
    res["t3_fused_step"] = ft.decoder.fused
    res["decoder_steps"] = ft.decoder.steps
    res["decoder_mean_batch"] = round(ft.decoder.step_rows / max(1, ft.decoder.steps), 2)
    res["s3gen"] = ft.s3gen_stats()
    ft.close()
    return res


def _ids(model: Any, text: str) -> Any:
    from chatterbox.tts_turbo import punc_norm

    return model.tokenizer(punc_norm(text), return_tensors="pt", truncation=True).input_ids


# ---------------------------------------------------------------------------------------------
def run_phase(name: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    out = Path(args.out) / f"phase_{name}.json"
    cmd = [sys.executable, __file__, name, "--ckpt", args.ckpt, "--out", args.out, "--tokens", str(args.tokens),
           "--runs", str(args.runs), "--json", str(out)] + extra
    log("$", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, timeout=args.phase_timeout)
    log(f"phase {name}: rc={proc.returncode} in {time.perf_counter() - t0:.1f}s")
    if proc.returncode != 0 or not out.exists():
        return {"error": f"phase {name} failed (rc={proc.returncode})"}
    return json.loads(out.read_text())


def env_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import chatterbox  # noqa: F401
        from importlib.metadata import version

        info["chatterbox_tts"] = version("chatterbox-tts")
        info["transformers"] = version("transformers")
    except Exception as exc:  # noqa: BLE001
        info["chatterbox_error"] = repr(exc)
    return info


def markdown(doc: dict[str, Any]) -> str:
    up, fa = doc.get("upstream", {}), doc.get("fast", {})
    ht = doc.get("http", {})
    n = doc["tokens"]

    def g(d: dict[str, Any], *keys: str) -> Any:
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return "n/a"
            d = d[k]
        return d

    def conc(d: dict[str, Any], c: int) -> Any:
        first = g(d, "concurrency", str(c), "audio_s_per_s")
        bursts = g(d, "concurrency", str(c), "audio_s_per_s_bursts")
        if not isinstance(bursts, list):
            return first
        return f"{first} (first burst; {len(bursts)} bursts: median {g(d, 'concurrency', str(c), 'audio_s_per_s_median')}, " \
            f"{', '.join(map(str, bursts))})"

    lines = [
        f"# Chatterbox Turbo on {doc['env'].get('gpu', '?')}: upstream vs voxgate",
        "",
        f"Random-weight checkpoint (tools/make_random_turbo_ckpt.py, bf16 files, stop token suppressed), "
        f"{n + 1} speech tokens a clip ({n}-token cap as upstream counts it), text of {len(TEXT)} characters. "
        f"torch {doc['env'].get('torch')}, chatterbox-tts {doc['env'].get('chatterbox_tts')}. "
        f"Command: `{doc['command']}`; PYTORCH_CUDA_ALLOC_CONF=`{doc.get('alloc_conf', '')}`.",
        "",
        "| figure | upstream generate() | voxgate in-process | voxgate over HTTP | target |",
        "|---|---|---|---|---|",
        f"| RTF, one stream | {g(up, 'rtf_median')} | {g(fa, 'rtf_median')} | {g(ht, 'rtf_median')} | <= 0.03 |",
        f"| speed-up vs upstream | 1x | {_ratio(g(up, 'rtf_median'), g(fa, 'rtf_median'))} | "
        f"{_ratio(g(up, 'rtf_median'), g(ht, 'rtf_median'))} | >= 8x |",
        f"| time to first audio (s, warm) | {g(up, 'first_audio_s_median')} (whole clip) | "
        f"{g(fa, 'first_audio_s_median')} | {g(ht, 'first_audio_s_median')} | <= 0.150 |",
        f"| audio s per s, 1 request | {conc(up, 1)} | {conc(fa, 1)} | {conc(ht, 1)} | |",
        f"| audio s per s, 4 concurrent | {conc(up, 4)} | {conc(fa, 4)} | {conc(ht, 4)} | |",
        f"| audio s per s, 16 concurrent | {conc(up, 16)} | {conc(fa, 16)} | {conc(ht, 16)} | >= 200 |",
        f"| peak VRAM (GiB, torch allocated) | {g(up, 'peak_alloc_gib')} | {g(fa, 'peak_alloc_gib')} | "
        f"{g(ht, 'peak_vram_gib')} (nvidia-smi, whole process, serving; {g(ht, 'peak_vram_load_gib')} while loading) "
        "| <= 6 GB at 16 |",
        f"| VRAM on the device after the bursts (GiB: used / reserved) | | {g(fa, 'vram_at_end', 'device_used')} / "
        f"{g(fa, 'vram_at_end', 'reserved')} | | |",
        f"| load time (s) | {g(up, 'load_s')} | {g(fa, 'load_s')} + warm-up {g(fa, 'warmup_s')} | "
        f"{g(ht, 'load_s')} to ready; background warm-up {g(ht, 'warmup', 'graphs_s')} (graphs) + "
        f"{g(ht, 'warmup', 'burst_s')} (burst), over {g(ht, 'warmup_wait_s')} after the at-ready requests | |",
        f"| one stream at ready, during the background warm-up: first audio / RTF | | | "
        f"{_at_ready(ht)} | |",
        f"| audio chunks a clip: one stream / mean at 16 | | {g(fa, 'one_stream_chunks')} / "
        f"{g(fa, 'concurrency', '16', 'chunks_per_clip_mean')} | | |",
        f"| playback stall, worst clip (s): one stream / 16 concurrent | | "
        f"{g(fa, 'one_stream_playback_stall_s_max')} / {g(fa, 'concurrency', '16', 'playback_stall_s_max')} | | 0 |",
        f"| same run, previous fixed chunk schedule at 16: audio s per s / chunks a clip / worst stall (s) | | "
        f"{g(fa, 'fixed_schedule', 'audio_s_per_s')} / {g(fa, 'fixed_schedule', 'chunks_per_clip_mean')} / "
        f"{g(fa, 'fixed_schedule', 'playback_stall_s_max')} | | |",
        f"| T3 ms per speech token, one stream | ~{_per_token(up, n)} (generate total) | "
        f"{g(fa, 't3_one_stream', 'ms_per_token')} | | |",
        "",
    ]
    eq = g(fa, "greedy_equality")
    if isinstance(eq, dict):
        lines.append("Greedy (top_k=1) speech tokens, voxgate decoder vs upstream `T3.inference_turbo`:")
        lines.append("")
        for k, v in eq.items():
            lines.append(f"- {k}: alone equal={v['alone_equal']} (first {v['alone_prefix_match']} of "
                         f"{v['lengths'][0]} match); batched with 2 others equal={v['batched_equal']} "
                         f"(prefix match {v['batched_prefix_match']} of {v['lengths']})")
        lines.append("")
    return "\n".join(lines)


def _ratio(a: Any, b: Any) -> str:
    try:
        return f"{float(a) / float(b):.1f}x"
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"


def _at_ready(ht: dict[str, Any]) -> str:
    """The HTTP phase's requests sent at ready: first audio and RTF of each, in seconds."""
    runs = ht.get("one_stream_at_ready") or []
    if not runs:
        return "n/a"
    return ", ".join(f"{r['first_audio_s']} / {r['total_s'] / r['audio_s']:.4f}" for r in runs)


def _per_token(up: dict[str, Any], n: int) -> str:
    try:
        return f"{1000 * float(up['first_audio_s_median']) / (n + 1):.1f}"
    except (KeyError, TypeError, ValueError):
        return "n/a"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=["all", "upstream", "fast", "http"])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--tokens-b", type=int, default=100)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-len", type=int, default=768)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--upstream-concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--upstream-json", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--phases", default="upstream,fast,http")
    p.add_argument("--phase-timeout", type=int, default=900)
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.phase == "upstream":
        res = phase_upstream(args)
    elif args.phase == "fast":
        res = phase_fast(args)
    elif args.phase == "http":
        from bench.turbo.bench_http import phase_http  # type: ignore  # noqa: PLC0415

        res = phase_http(args)
    else:
        doc: dict[str, Any] = {"env": env_info(), "tokens": args.tokens,
                               "command": "bash bench/run_gpu_bench.sh", "argv": sys.argv[1:],
                               "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
        phases = args.phases.split(",")
        common = ["--max-batch", str(args.max_batch), "--max-len", str(args.max_len)]
        if "upstream" in phases:
            doc["upstream"] = run_phase("upstream", args, ["--upstream-concurrency",
                                                           *map(str, args.upstream_concurrency),
                                                           "--tokens-b", str(args.tokens_b)])
        up_json = Path(args.out) / "phase_upstream.json"
        if "fast" in phases:
            extra = common + ["--concurrency", *map(str, args.concurrency), "--tokens-b", str(args.tokens_b)]
            if up_json.exists():
                extra += ["--upstream-json", str(up_json)]
            doc["fast"] = run_phase("fast", args, extra)
        if "http" in phases:
            doc["http"] = run_phase("http", args, common + ["--concurrency", *map(str, args.concurrency)])
        Path(args.out, "gpu_turbo_bench.json").write_text(json.dumps(doc, indent=1))
        md = markdown(doc)
        Path(args.out, "gpu_turbo_bench.md").write_text(md)
        print(md)
        return 0
    text = json.dumps(res)
    if args.json:
        Path(args.json).write_text(text)
    print(text[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
