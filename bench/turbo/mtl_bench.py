#!/usr/bin/env python3
"""Chatterbox Multilingual, one stream: voxgate's engine next to upstream's ``generate()``.

Same random-weight checkpoint (tools/make_random_mtl_ckpt.py, built here when missing, as
bench/run_gpu_bench.sh does for Turbo), same text, language and token cap, same process and
model weights, same run:

  upstream  ChatterboxMultilingualTTS.generate(text, language_id) - T3.inference capped at
            --tokens (generate() hard-codes 1000), S3Gen, watermark. No streaming: its first
            audio is the whole call.
  voxgate   ChatterboxMultilingualEngine.synthesize() on the same loaded model: sentence by
            sentence, so first audio is the first sentence's.
  greedy    min_p = 1 tokens of both token loops on the device (must be equal).

Reports per side: load, first audio, total, audio seconds, RTF (compute s / audio s), median
over --runs after one warm-up; peak CUDA memory. With random weights the alignment analyzer
stops generation at random points, so audio lengths differ between runs; RTF is per audio
second. JSON on stdout and in --json.

    python bench/turbo/mtl_bench.py --device cuda --ckpt /tmp/voxgate-mtl-ckpt --json OUT/mtl_bench.json
    python bench/turbo/mtl_bench.py --device cpu --text short --tokens 3 --runs 1 --warmup 0 --greedy-steps 2
                                                                          # a check that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tts-inference-server"))
sys.path.insert(0, str(REPO))  # the repository: the bench.* imports below

from bench.turbo.gpu_common import time_clip  # noqa: E402

TEXTS = {
    "short": "Bonjour à tous.",
    # 3 sentences, 150 characters
    "long": ("Bonjour à tous, et bienvenue dans le point hebdomadaire. Le serveur a traité plus de "
             "demandes que jamais. Merci de votre patience et à bientôt."),
}
SR = 24000


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def ensure_checkpoint(ckpt: Path) -> float:
    if (ckpt / "conds.pt").exists():
        return 0.0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "tools" / "make_random_mtl_ckpt.py"), str(ckpt), "--dtype", "bf16"],
                   check=True, stdout=sys.stderr)
    return time.perf_counter() - t0


def capped(inference: Any, cap: int) -> Any:
    """Upstream's T3.inference with max_new_tokens at most ``cap`` (generate() passes 1000)."""

    @functools.wraps(inference)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["max_new_tokens"] = min(cap, kwargs.get("max_new_tokens") or cap)
        out = inference(*args, **kwargs)
        # A random-weight T3 also emits ids past the 6561 speech codes (e.g. 8119), which upstream's
        # generate() hands to S3Gen unfiltered: a device-side index assert on CUDA (H200, 0.1.7).
        # Dropped here, as voxgate's engine drops them; recorded in the JSON (upstream_token_filter).
        if hasattr(out, "shape") and out.dim() == 2:
            out = out[:, out[0] < SPEECH_CODES]
        elif hasattr(out, "shape") and out.dim() == 1:
            out = out[out < SPEECH_CODES]
        return out

    return run


SPEECH_CODES = 6561  # S3Gen's speech-token vocabulary; SOS/EOS and anything above are not speech


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


def bench_upstream(model: Any, text: str, language: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    orig = model.t3.inference
    model.t3.inference = capped(orig, args.tokens)
    runs = []
    try:
        for i in range(args.runs + args.warmup):
            torch.manual_seed(i)
            sync(args.device)
            t0 = time.perf_counter()
            wav = model.generate(text, language_id=language)
            sync(args.device)
            dt = time.perf_counter() - t0
            audio = wav.shape[-1] / SR
            runs.append({"first_audio_s": round(dt, 4), "total_s": round(dt, 4), "audio_s": round(audio, 3),
                         "rtf": round(dt / max(audio, 1e-9), 4)})
    finally:
        model.t3.inference = orig
    timed = runs[1:] if args.warmup else runs  # the first is the warm-up
    return {"warmup": runs[0] if args.warmup else None, "runs": timed, "first_audio_s_median": median_of(timed, "first_audio_s"),
            "rtf_median": median_of(timed, "rtf"), "streaming": False, "upstream_token_filter": f"ids >= {SPEECH_CODES} dropped"}


def bench_voxgate(engine: Any, text: str, language: str, args: argparse.Namespace) -> dict[str, Any]:
    from voxgate_server.engines.base import SynthesisRequest
    from voxgate_server.text import chunk_text

    sentences = chunk_text(text, engine.capabilities().max_chunk_chars)  # as the server splits
    runs = []
    for i in range(args.runs + args.warmup):
        request = SynthesisRequest(chunks=sentences, voice="default",
                                   options={"language": language, "seed": i})
        sync(args.device)
        clip = time_clip((c.samples for c in engine.synthesize(request)), SR)
        clip["rtf"] = clip["total_s"] / max(clip["audio_s"], 1e-9)
        runs.append({k: round(v, 4) if isinstance(v, float) else v for k, v in clip.items()})
    timed = runs[1:] if args.warmup else runs
    return {"warmup": runs[0] if args.warmup else None, "runs": timed, "text_chunks": len(sentences),
            "first_audio_s_median": median_of(timed, "first_audio_s"), "rtf_median": median_of(timed, "rtf"),
            "streaming": "sentence"}


def greedy_check(engine: Any, text: str, language: str, steps: int) -> dict[str, Any]:
    """Greedy (min_p = 1) tokens of upstream's T3.inference and voxgate's loop, same inputs."""
    import torch

    from voxgate_server.engines.chatterbox_turbo.conditioning import private_copy

    model = engine.model
    ids = engine.text_tokens(text, language)
    cond = dataclasses.replace(model.conds.t3, cond_prompt_speech_emb=None)
    with torch.inference_mode():
        raw = model.t3.inference(t3_cond=cond, text_tokens=ids, max_new_tokens=steps, temperature=0.8,
                                 cfg_weight=0.5, repetition_penalty=2.0, min_p=1.0, top_p=1.0)[0].tolist()
    upstream = [t for t in raw if t != model.t3.hp.stop_speech_token]
    params = dataclasses.replace(engine.sampling_params({}, steps), min_p=1.0)
    ours = engine.token_generator.generate(ids, private_copy(model.conds).t3, params, engine.new_generator(0),
                                           threading.Event()).tolist()
    return {"steps": steps, "upstream": upstream, "voxgate": ours, "equal": ours == upstream}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--ckpt", type=Path, default=Path("/tmp/voxgate-mtl-ckpt"))
    p.add_argument("--text", choices=sorted(TEXTS), default="long")
    p.add_argument("--language", default="fr")
    p.add_argument("--tokens", type=int, default=250, help="speech tokens per text chunk at most (both sides)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per side (at least 1)")
    p.add_argument("--warmup", type=int, choices=[0, 1], default=1, help="one untimed run per side first")
    p.add_argument("--dtype", default="float32", help="voxgate's T3 dtype (upstream runs float32)")
    p.add_argument("--chunk-chars", type=int, default=300,
                   help="voxgate's text chunk size (VOXGATE_CHATTERBOX_MTL_CHUNK_CHARS; 50-1000)")
    p.add_argument("--greedy-steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # perth and tqdm print; stdout is the JSON's
        doc = run(args)
    text_out = json.dumps(doc, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text_out)
    print(text_out, file=stdout)
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    build_s = ensure_checkpoint(args.ckpt)
    from voxgate_server.engines.chatterbox_multilingual.engine import ChatterboxMultilingualEngine
    from voxgate_server.engines.chatterbox_multilingual.settings import MultilingualSettings
    from voxgate_server.settings import Settings

    voices = Path(os.environ.get("TMPDIR", "/tmp")) / "voxgate-mtl-bench-voices"
    engine = ChatterboxMultilingualEngine(
        Settings(voices_dir=voices, engines=["chatterbox-multilingual"]),
        MultilingualSettings(checkpoint_dir=args.ckpt, device=args.device, dtype=args.dtype, warmup=False,
                             chunk_chars=args.chunk_chars,
                             chunk_max_duration_s=args.tokens / 25, max_duration_s=600, max_duration_cap_s=600),
    )
    t0 = time.perf_counter()
    engine.load()
    sync(args.device)
    load_s = time.perf_counter() - t0
    text = TEXTS[args.text]
    doc: dict[str, Any] = {
        "bench": "mtl_bench", "device": args.device, "text": text, "text_chars": len(text),
        "language": args.language, "tokens_cap": args.tokens, "runs": args.runs, "voxgate_t3_dtype": args.dtype,
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "cpu_threads": torch.get_num_threads(), "checkpoint_build_s": round(build_s, 1),
        "load_s": round(load_s, 2), "argv": sys.argv[1:],
    }
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # voxgate first, then upstream (whose calls leave alignment hooks on the model for good)
    doc["voxgate"] = bench_voxgate(engine, text, args.language, args)
    if args.device == "cuda":
        doc["voxgate"]["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        torch.cuda.reset_peak_memory_stats()
    if args.dtype != "float32":  # upstream runs its own float32 T3
        engine.model.t3.to(dtype=torch.float32)
        engine.model.conds.t3.to(dtype=torch.float32)
    doc["upstream"] = bench_upstream(engine.model, text, args.language, args)
    if args.device == "cuda":
        doc["upstream"]["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    doc["greedy"] = greedy_check(engine, text, args.language, args.greedy_steps) if args.greedy_steps else None
    up, vg = doc["upstream"], doc["voxgate"]
    doc["summary"] = {
        "upstream_rtf": up["rtf_median"], "voxgate_rtf": vg["rtf_median"],
        "upstream_first_audio_s": up["first_audio_s_median"], "voxgate_first_audio_s": vg["first_audio_s_median"],
        "greedy_equal": doc["greedy"]["equal"] if doc["greedy"] else None,
    }
    return doc


if __name__ == "__main__":
    sys.exit(main())
