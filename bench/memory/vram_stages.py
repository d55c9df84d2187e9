"""Where the GPU memory goes, stage by stage, as the fast path starts and serves (GPU machine).

The issue's VRAM target is the process's memory at 16 concurrent requests; torch's allocated
peak is well under it, the device's count is not. This walks the engine's start-up in the order
``FastTurbo.warmup`` runs it (T3 graphs, one request, S3Gen graphs, the full-batch burst), then
bursts of 16 (``--bursts``, default 2), and records ``vram_breakdown`` after each stage: used
on the device, outside PyTorch's allocator (CUDA context, library handles and workspaces,
loaded kernels, graph executables), reserved and allocated per pool. The engine's settings come from the environment
(``VOXGATE_CHATTERBOX_*``, as the server reads them), so a variant is one more process.

    python3 bench/memory/vram_stages.py --ckpt CKPT --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tts-inference-server"))

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.turbo.gpu_common import run_at_once, vram_breakdown  # noqa: E402
from bench.turbo.turbo_clip import SR, TEXT  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--max-len", type=int, default=768)
    p.add_argument("--bursts", type=int, default=2, help="bursts of 16 after start-up")
    p.add_argument("--watermark-inline", action="store_true",
                   help="experiment: each request's thread runs its own watermark, not the GPU helper")
    args = p.parse_args()
    import torch

    stages: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def stage(name: str, **extra: Any) -> None:
        torch.cuda.synchronize()
        row = {"stage": name, "t_s": round(time.perf_counter() - t0, 2), **vram_breakdown(torch),
               "cufft_plans": torch.backends.cuda.cufft_plan_cache.size, **extra}
        stages.append(row)
        print(json.dumps(row), flush=True)

    torch.zeros(1, device="cuda")
    stage("cuda context")
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    from voxgate_server.engines.chatterbox_fast import FastTurbo
    from voxgate_server.engines.chatterbox_fast.engine import FastSettings
    from voxgate_server.engines.chatterbox_fast.pipeline import WARM_BURST_TEXT

    model = ChatterboxTurboTTS.from_local(args.ckpt, device="cuda")
    stage("upstream model loaded")
    fs = FastSettings()
    ft = FastTurbo(model, **{**fs.turbo_kwargs(), "max_len": args.max_len}).start()
    if args.watermark_inline:
        ft.vocoder.on_helper = None
    stage("FastTurbo started", settings=fs.model_dump(), watermark_inline=args.watermark_inline)
    ft.decoder.warmup()
    stage("T3 graphs captured", t3_graphs=len(ft.decoder._graphs))
    for _ in ft.stream("Warm up the decoder and the vocoder.", max_new_tokens=60):
        pass
    stage("one request")
    ft.vocoder.warm_graphs(model.conds.gen)
    stats = ft.s3gen_stats()
    stage("S3Gen graphs captured", flow_graphs=stats["flow_graphs"], hift_graphs=stats["hift_graphs"])
    if fs.warmup_burst_tokens:
        ft._warm_burst(fs.max_batch, fs.warmup_burst_tokens)
        stage("warm-up burst", text=WARM_BURST_TEXT[:20])
    torch.cuda.reset_peak_memory_stats()
    for i in range(args.bursts):
        res, _, wall = run_at_once(16, lambda _: sum(len(c) for c in ft.stream(TEXT, max_new_tokens=args.tokens + 1)))
        stage(f"burst of 16 #{i + 1}", audio_s_per_s=round(sum(res) / SR / wall, 1),
              peak_alloc=round(torch.cuda.max_memory_allocated() / 2**30, 3),
              peak_reserved=round(torch.cuda.max_memory_reserved() / 2**30, 3))
    torch.cuda.empty_cache()
    stage("empty_cache()")
    torch.backends.cuda.cufft_plan_cache.clear()
    torch.cuda.empty_cache()
    stage("cuFFT plan cache cleared")
    ft.close()
    Path(args.json).write_text(json.dumps({"alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
                                           "module_loading": os.environ.get("CUDA_MODULE_LOADING", ""),
                                           "stages": stages}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
