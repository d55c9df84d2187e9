"""Which CUDA work costs device memory outside PyTorch's allocator (GPU machine, no model).

The first burst of 16 requests adds ~1.1 GiB outside the allocator (``vram_stages.py``). The
suspects each get a probe here, in one fresh process, in order, with ``vram_breakdown`` after
each: matmuls and convolutions on 16 new threads (per-thread cuBLAS / cuDNN handles), STFTs of
many lengths (cuFFT keeps one plan per input shape), and Perth's watermark on 16 threads.

    python3 bench/memory/vram_probe.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the bench.* imports below
from bench.turbo.gpu_common import run_at_once, vram_breakdown


def on_threads(n: int, fn: Callable[[int], None]) -> None:
    """``fn(i)`` on ``n`` new threads at once (``run_at_once``); the threads end before this
    returns, and the first error is raised here."""
    _, errors, _ = run_at_once(n, fn)
    if errors:
        raise RuntimeError(errors[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--threads", type=int, default=16)
    args = p.parse_args()
    import numpy as np
    import torch

    rows: list[dict[str, Any]] = []

    def probe(name: str, **extra: Any) -> None:
        torch.cuda.synchronize()
        row = {"probe": name, **vram_breakdown(torch), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    dev = torch.device("cuda")
    torch.zeros(1, device=dev)
    probe("cuda context")
    n = args.threads

    def elementwise(i: int) -> None:
        (torch.ones(1024, device=dev) * i).sum().item()

    on_threads(n, elementwise)
    probe(f"{n} threads: elementwise")

    a32 = torch.randn(512, 512, device=dev)
    a16 = a32.to(torch.bfloat16)
    torch.cuda.synchronize()
    (a32 @ a32).sum().item()
    probe("main thread: one fp32 matmul")

    def matmul(i: int) -> None:
        (a32 @ a32).sum().item()
        (a16 @ a16).sum().item()
        torch.addmm(a32[0], a32, a32).sum().item()

    on_threads(n, matmul)
    probe(f"{n} threads: fp32 + bf16 matmuls")
    on_threads(n, matmul)
    probe(f"{n} more threads: the same matmuls")

    x = torch.randn(1, 80, 500, device=dev)
    w = torch.randn(256, 80, 7, device=dev)

    def conv(i: int) -> None:
        torch.nn.functional.conv1d(x, w, padding=3).sum().item()

    on_threads(n, conv)
    probe(f"{n} threads: conv1d")

    window = torch.hann_window(2048, device=dev)

    def stft(samples: int) -> None:
        sig = torch.randn(samples, device=dev)
        spec = torch.stft(sig, 2048, hop_length=320, window=window, return_complex=True)
        torch.istft(spec, 2048, hop_length=320, window=window).sum().item()

    for k in range(20, 220):
        stft(k * 320)
    probe("main thread: STFT + iSTFT of 200 lengths", plans=torch.backends.cuda.cufft_plan_cache.size)
    torch.backends.cuda.cufft_plan_cache.clear()
    torch.cuda.empty_cache()
    probe("cuFFT plan cache cleared, empty_cache()", plans=torch.backends.cuda.cufft_plan_cache.size)

    from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker

    wm = PerthImplicitWatermarker(device="cuda")
    probe("Perth loaded on the GPU")
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal(24000 * (1 + i % 4) + 480 * i).astype(np.float32) * 0.1 for i in range(n)]

    def watermark(i: int) -> None:
        with torch.inference_mode():
            wm.apply_watermark(signals[i], sample_rate=24000)

    on_threads(n, watermark)
    probe(f"{n} threads: Perth watermark", plans=torch.backends.cuda.cufft_plan_cache.size)
    torch.backends.cuda.cufft_plan_cache.clear()
    torch.cuda.empty_cache()
    probe("cuFFT plan cache cleared, empty_cache()", plans=torch.backends.cuda.cufft_plan_cache.size)
    for i in range(n):
        watermark(i)
    probe(f"one thread: Perth watermark x{n}", plans=torch.backends.cuda.cufft_plan_cache.size)

    Path(args.json).write_text(json.dumps({"torch": torch.__version__, "probes": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
