"""Knobs bench, ``clips``: whole clips through ``FastTurbo`` for each ``--variant`` (RTF of one
stream, first audio, audio s/s in bursts of 4 and 16, with each burst's timeline)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from bench.turbo.gpu_common import launch_timeline, run_at_once, time_clip
from bench.knobs.knobs_common import emit
from bench.turbo.turbo_clip import SR, TEXT


def burst_timeline(clips: list[dict[str, float]], steps: list[tuple[float, str, int]],
                   calls: list[tuple[str, int, bool, int, float, float]], cpu_s: float) -> dict[str, Any]:
    """Where a burst's time went, in ms from its first request: T3's steps and the S3Gen worker's
    calls (``launch_timeline``), the worker's busy time, each clip's first and last T3 token and
    its end, and the process's CPU seconds per wall second (all threads; near 1 with one thread
    busy: the GIL's ceiling)."""
    origin = min(c["t0_abs"] for c in clips)
    wall = max(c["end_abs"] for c in clips) - origin

    def ms(t: float) -> float:
        return round((t - origin) * 1000, 1)

    busy = {stage: round(sum(t1 - t0 for s, _, _, _, t0, t1 in calls if s == stage) * 1000, 1)
            for stage in ("flow", "hift")}
    return {
        "wall_ms": round(wall * 1000, 1), "cpu_s_per_wall_s": round(cpu_s / wall, 2),
        "t3_last_first_token_ms": max(ms(c["t3_first_abs"]) for c in clips),
        "t3_last_token_ms": max(ms(c["t3_done_abs"]) for c in clips),
        **launch_timeline(steps, calls, ms),
        "worker_busy_ms": busy,
        # first T3 token, last T3 token, clip's end (ms)
        "clips": sorted([ms(c["t3_first_abs"]), ms(c["t3_done_abs"]), ms(c["end_abs"])] for c in clips),
    }


def section_clips(model: Any, torch: Any, args: argparse.Namespace, rows: list) -> None:
    from voxgate_server.engines.chatterbox_fast import FastTurbo

    variants = [json.loads(v) for v in args.variants]
    for v in variants:
        si = v.pop("switch_interval_ms", None)
        from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner
        from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner, fused_snake_for

        # padding steps of batched S3Gen graphs (class attributes, not FastTurbo arguments)
        FlowRunner.batch_width_step = v.pop("flow_batch_width_step", FlowRunner.batch_width_step)
        HiftRunner.batch_frame_step = v.pop("hift_batch_frame_step", HiftRunner.batch_frame_step)
        HiftRunner.fused_snake = v.pop("hift_fused_snake", HiftRunner.fused_snake)
        default_si = sys.getswitchinterval()
        if si:
            sys.setswitchinterval(si / 1000)
        # the T3 decoder's CUDA stream priority (not a FastTurbo argument)
        knobs = {k: v.pop(k) for k in ("t3_stream_priority",) if k in v}
        ft = FastTurbo(model, max_batch=16, max_len=768, **v)
        if "t3_stream_priority" in knobs:
            ft.decoder._stream = torch.cuda.Stream(ft.decoder.device, priority=knobs["t3_stream_priority"])
        ft.start()
        try:
            warmup_s = ft.warmup()
            warm_stats = ft.s3gen_stats()
            reserved_warm = torch.cuda.memory_reserved() / 2**30
            alloc_warm = torch.cuda.memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()

            def clip() -> dict[str, float]:
                return time_clip(ft.stream(TEXT, max_new_tokens=args.tokens + 1), SR)

            def traced_clip() -> dict[str, float]:
                """One clip, also timing when T3's last token reached the vocoder, and (absolute
                perf_counter times, for the burst timeline) when T3 made its first and last token."""
                marks: dict[str, float] = {}

                def audio() -> Any:
                    t0 = marks["t0_abs"] = time.perf_counter()
                    ts = ft.tokens(TEXT, max_new_tokens=args.tokens + 1)

                    def batches() -> Any:
                        yield from ts
                        marks["t3_end_s"] = time.perf_counter() - t0
                        marks["t3_first_abs"] = ts.t_first or 0.0
                        marks["t3_done_abs"] = ts.t_done or 0.0

                    yield from ft.vocoder.stream(batches(), model.conds.gen)

                out = time_clip(audio(), SR)
                out.update(marks)
                out["end_abs"] = time.perf_counter()
                return out

            ones = [traced_clip() for _ in range(3)]
            wm = {}
            if ft.vocoder.watermarker is not None:
                for secs in (1, 4):
                    ft.vocoder._watermark(np.zeros(SR * secs, dtype=np.float32))
                    t0 = time.perf_counter()
                    ft.vocoder._watermark(np.zeros(SR * secs, dtype=np.float32))
                    wm[f"watermark_{secs}s_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            bursts: dict[int, list[tuple[list[dict[str, float]], float]]] = {4: [], 16: []}
            timelines: dict[int, dict[str, Any]] = {}
            for rnd in range(2):  # the first bursts also capture the graphs their batch sizes need
                for n in (4, 16):
                    if rnd:  # the second bursts' timelines
                        ft.decoder.trace, ft.vocoder.worker.trace = [], []
                    cpu0 = time.process_time()
                    res, _, w = run_at_once(n, lambda _: traced_clip())
                    cpu = time.process_time() - cpu0
                    bursts[n].append((res, w))
                    if rnd:
                        timelines[n] = burst_timeline(res, ft.decoder.trace, ft.vocoder.worker.trace, cpu)
                        ft.decoder.trace = ft.vocoder.worker.trace = None
            results, wall = bursts[16][0]
            emit({"section": "clips", "variant": v, "switch_interval_ms": si,
                  "batch_steps": [FlowRunner.batch_width_step, HiftRunner.batch_frame_step], "t3_knobs": knobs,
                  "hift_fused_snake": HiftRunner.fused_snake and fused_snake_for(model.s3gen.mel2wav,
                                                                                 model.s3gen.device) is not None,
                  "rtf_median": round(statistics.median(o["total_s"] / o["audio_s"] for o in ones), 4),
                  "first_audio_s_median": round(statistics.median(o["first_audio_s"] for o in ones), 4),
                  "t3_end_s_median": round(statistics.median(o["t3_end_s"] for o in ones), 4),
                  "tail_s_median": round(statistics.median(o["total_s"] - o["t3_end_s"] for o in ones), 4),
                  "chunks_one_stream": ones[-1]["chunks"], **wm,
                  "c16_audio_s_per_s": round(sum(r["audio_s"] for r in results) / wall, 1),
                  "c16_first_audio_s_max": round(max(r["first_audio_s"] for r in results), 4),
                  "bursts": {n: [{"audio_s_per_s": round(sum(r["audio_s"] for r in res) / w, 1),
                                  "first_audio_s_max": round(max(r["first_audio_s"] for r in res), 4),
                                  "t3_end_s_max": round(max(r["t3_end_s"] for r in res), 4),
                                  "total_s_max": round(max(r["total_s"] for r in res), 4),
                                  "chunks_mean": round(statistics.mean(r["chunks"] for r in res), 2)}
                                 for res, w in runs] for n, runs in bursts.items()},
                  "timelines": timelines, "warmup_s": round(warmup_s, 2),
                  "graphs_after_warmup": {k: warm_stats[k] for k in ("flow_graphs", "hift_graphs")},
                  "s3gen_stats": ft.s3gen_stats(),
                  "peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                  "reserved_after_warmup_gib": round(reserved_warm, 3),
                  "alloc_after_warmup_gib": round(alloc_warm, 3),
                  "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
                  "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}, rows)
        finally:
            ft.close()
            sys.setswitchinterval(default_si)
            torch.cuda.empty_cache()
