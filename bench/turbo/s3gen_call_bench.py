#!/usr/bin/env python3
"""Where an S3Gen call's time goes: wall clock vs GPU busy time, by batch size and chunk length.

    python bench/turbo/s3gen_call_bench.py --ckpt CKPT [--json OUT]

For flow (tokens -> mel, after the voice's 250-token prompt) and HiFT (mel -> wave) it runs
batches of 1/4/16 pieces of 24 and 120 tokens through the S3GenWorker's own batch functions and
reports the median wall time of a call, and the summed kernel time of one profiled call
(torch.profiler/CUPTI) with the number of kernels. Wall far above kernel time means the call is
bound by the host (Python and kernel launches), not by the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tts-inference-server"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="one small shape (a CPU smoke run)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker, _FlowJob, _HiftJob

    model = ChatterboxTurboTTS.from_local(args.ckpt, device=args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sizes, batches = ((8,), (1, 2)) if args.quick else ((24, 120), (1, 4, 16))
    worker = S3GenWorker(model.s3gen)  # its thread idles; the batch functions are called here
    ref = model.conds.gen
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for n in sizes:
            for b in batches:
                toks = [torch.randint(0, 6561, (n,), generator=g).tolist() for _ in range(b)]
                for stage in ("flow", "hift"):
                    walls = []
                    mel = None
                    for rep in range(args.reps + 1):
                        if stage == "flow":
                            jobs = [_FlowJob(t, ref) for t in toks]
                            fn = worker._flow_batch
                        else:
                            if mel is None:
                                fj = [_FlowJob(t, ref) for t in toks]
                                worker._flow_batch(fj)
                                mel = [j.future.result() for j in fj]
                            jobs = [_HiftJob(m, None) for m in mel]
                            fn = worker._hift_batch
                        sync()
                        t0 = time.perf_counter()
                        fn(jobs)
                        sync()
                        wall = time.perf_counter() - t0
                        for j in jobs:
                            j.future.result()
                        if rep:  # first is warm-up for this shape
                            walls.append(wall * 1000)
                    jobs = [_FlowJob(t, ref) for t in toks] if stage == "flow" else [_HiftJob(m, None) for m in mel]
                    kernel_ms, kernels = None, None
                    try:
                        from torch.profiler import ProfilerActivity, profile

                        with profile(activities=[ProfilerActivity.CUDA if args.device == "cuda" else ProfilerActivity.CPU]) as prof:
                            fn(jobs)
                            sync()
                        evs = [e for e in prof.events() if e.device_type.name == ("CUDA" if args.device == "cuda" else "CPU")]
                        kernel_ms = round(sum(e.device_time for e in evs) / 1000.0, 2)
                        kernels = len(evs)
                    except Exception as exc:  # noqa: BLE001
                        kernel_ms = repr(exc)[:200]
                    row = {"stage": stage, "tokens": n, "batch": b,
                           "wall_ms": round(statistics.median(walls), 2),
                           "kernel_ms": kernel_ms, "kernels": kernels}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    worker.close()
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
