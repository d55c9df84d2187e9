#!/usr/bin/env python3
"""Which fast-path settings pay on this GPU: each knob against its baseline, same process, same run.

    python bench/gpu_knobs_bench.py --ckpt CKPT [--json OUT] [--sections mem,t3,flow,clips]

- ``mem``: where the VRAM goes after loading (parameters per module, allocated).
- ``t3prof``: the kernels of one decode step (batch 1 and 16), by total GPU time.
- ``s3mem``: peak memory and wall of S3Gen's batched calls, 16 pieces at once against split calls,
  and how far TF32 matmuls move the flow's mel (same noise); ``--tf32`` runs it all with them.
- ``flowprof``: a batched flow call's kernels by GPU time, and the estimator's attention in
  float16 / bfloat16 (``flow_attention.py``) and autocast against it: wall, peak memory, mel moved.
- ``hiftprof``: a batched HiFT call's kernels by GPU time, eager against its graph's replay, with
  PyTorch's Snake and with the fused one (``snake_kernel.py``), and how far the wave moves.
- ``fusedcfg``: the fused step's matmul tiles, K splits and PDL, replayed as graphs (batch 1 and
  16); ``--sweep`` searches each matrix's tiles. ``attncfg``: the weights' layout and the
  attention's key blocks and splits.
- ``t3step``: the decode step's variants (plain graphs, fused Triton kernels, ``torch.compile``):
  set-up, step time, greedy tokens against the plain step.
- ``t3``: the T3 decoder alone: graph replay only (GPU time of a step, no host work) against the
  scheduler's ms per token, for ``ahead`` 1/2/3 (steps queued before the host reads the last
  one), one stream and 16, each also with a thread running S3Gen flow calls at the same time
  (what the engine does while it decodes), under the default and a 0.5 ms GIL switch interval.
- ``flow``: S3Gen flow calls in float32 against bf16 autocast: wall, and how far the mel moves
  (against how far other noise moves it).
- ``flowgraph``: S3Gen flow and HiFT calls as upstream makes them, restated eagerly, and replayed
  as CUDA graphs (``flow_graph.py``, ``hift_graph.py``): wall, capture cost, the replayed output
  against the eager one (and, for the flow, against upstream's with the same noise).
- ``clips``: whole clips through ``FastTurbo`` (RTF of one stream, first audio, audio s/s at 16)
  for the combinations that the sections above single out (``--variant`` JSON: FastTurbo keyword
  arguments; run each variant in its own process for a fair A/B, as ``bench/gpu_knobs.sh`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tts-inference-server"))

from gpu_common import (graph_ms_per_step, launch_timeline, median_call_ms, prefix_match, run_at_once,  # noqa: E402
                        time_clip)

TEXT = "Good morning, and welcome to the weekly update. The server handled more requests than ever this week."
SR = 24000


def emit(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(json.dumps(row), flush=True)
    rows.append(row)


def section_mem(model: Any, torch: Any, rows: list) -> None:
    def gib(mod: Any) -> float:
        return round(sum(p.numel() * p.element_size() for p in mod.parameters()) / 2**30, 3)

    s3 = model.s3gen
    emit({"section": "mem", "allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
          "t3_gib": gib(model.t3), "t3_tfmr_gib": gib(model.t3.tfmr) if model.t3.tfmr is not None else 0,
          "s3gen_flow_gib": gib(s3.flow), "s3gen_hift_gib": gib(s3.mel2wav),
          "s3gen_tokenizer_gib": gib(s3.tokenizer), "s3gen_speaker_gib": gib(s3.speaker_encoder),
          "ve_gib": gib(model.ve)}, rows)


class FlowLoad:
    """A thread making S3Gen flow calls back to back (1 piece of 36 tokens), as the engine's
    S3Gen worker does while T3 decodes."""

    def __init__(self, worker: Any, ref: dict, torch: Any) -> None:
        from voxgate_server.engines.chatterbox_fast.s3gen_worker import _FlowJob

        self._stop = threading.Event()
        self.calls = 0

        def run() -> None:
            with torch.inference_mode():
                while not self._stop.is_set():
                    worker._flow_batch([_FlowJob(list(range(100, 136)), ref)])
                    self.calls += 1

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.calls


def section_t3(model: Any, torch: Any, args: argparse.Namespace, rows: list) -> None:
    from chatterbox.tts_turbo import punc_norm

    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder, SamplingParams
    from voxgate_server.engines.chatterbox_fast.s3gen_worker import S3GenWorker

    ids = model.tokenizer(punc_norm(TEXT), return_tensors="pt").input_ids
    n = args.tokens + 1
    worker = S3GenWorker(model.s3gen)
    default_si = sys.getswitchinterval()
    for ahead in (1, 2, 3):
        dec = BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=ahead).start()
        dec.warmup()
        if ahead == 1:  # GPU time of one step, replayed back to back with no host work between
            for B in (1, 16):
                emit({"section": "t3", "graph_replay_only": True, "batch": B, "length": 512,
                      "ms_per_step": round(graph_ms_per_step(dec, B, 512), 4)}, rows)
        dec.submit(model.conds.t3, ids, SamplingParams(), 20).result(600)
        for load in (False, True):
            for si in ((default_si, 0.0005) if load else (default_si,)):
                sys.setswitchinterval(si)
                fl = FlowLoad(worker, model.conds.gen, torch) if load else None
                try:
                    t0 = time.perf_counter()
                    toks = dec.submit(model.conds.t3, ids, SamplingParams(), n).result(600)
                    one = (time.perf_counter() - t0) * 1000 / len(toks)
                    steps0 = dec.steps
                    t0 = time.perf_counter()
                    streams = [dec.submit(model.conds.t3, ids, SamplingParams(seed=i), n) for i in range(16)]
                    total = sum(len(s.result(600)) for s in streams)
                    dt = time.perf_counter() - t0
                finally:
                    calls = fl.stop() if fl else 0
                    sys.setswitchinterval(default_si)
                emit({"section": "t3", "ahead": ahead, "flow_thread": load, "switch_interval_ms": si * 1000,
                      "one_stream_ms_per_token": round(one, 4),
                      "b16_ms_per_step": round(1000 * dt / max(1, dec.steps - steps0), 4),
                      "b16_tokens_per_s": round(total / dt, 1), "flow_calls_meanwhile": calls}, rows)
        dec.close()
        del dec
        torch.cuda.empty_cache()
    worker.close()


def section_t3prof(model: Any, torch: Any, rows: list) -> None:
    """Kernels of one eager decode step (the same kernels the graph replays), by total time."""
    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder

    for fused in (False, True):
        _profile_step(BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=1, fused=fused), torch, rows)
        torch.cuda.empty_cache()


def _kernel_top(prof: Any, n: int) -> tuple[float, int, list[dict[str, Any]]]:
    """(kernel ms, kernels, the ``n`` kernel names with the most GPU time) of a profile."""
    by: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type.name == "CUDA":
            by.setdefault(e.name[:90], []).append(e.device_time)
    total = sum(sum(v) for v in by.values())
    top = sorted(by.items(), key=lambda kv: -sum(kv[1]))[:n]
    return total / 1000, sum(len(v) for v in by.values()), [{"name": k, "n": len(v), "us": round(sum(v), 1)}
                                                            for k, v in top]


def _profile_step(dec: Any, torch: Any, rows: list) -> None:
    from torch.profiler import ProfilerActivity, profile

    with torch.cuda.stream(dec._stream), torch.inference_mode():
        dec.pos_buf.fill_(448)  # the fused attention reads each row's length from here
        for B in (1, 16):
            for _ in range(3):
                dec._step_eager(B, 512)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                dec._step_eager(B, 512)
                torch.cuda.synchronize()
            kernel_ms, kernels, top = _kernel_top(prof, 14)
            emit({"section": "t3prof", "fused": dec.fused, "batch": B, "length": 512, "kernels": kernels,
                  "kernel_ms": round(kernel_ms, 4), "top": top}, rows)


def _recaptured_ms(dec: Any, torch: Any) -> tuple[float, float]:
    """Graph replay ms per step at batch 1 and 16 (length 512), the graphs captured afresh, on the
    decoder's stream as in serving, so that changed tiles or kernels take effect."""
    dec._graphs.clear()
    with torch.cuda.stream(dec._stream):
        dec._graph(1, 512)
        dec._graph(16, 512)
    return graph_ms_per_step(dec, 1, 512, reps=50), graph_ms_per_step(dec, 16, 512, reps=50)


def section_fusedcfg(model: Any, torch: Any, args: argparse.Namespace, rows: list) -> None:
    """Graph replay ms per step at batch 1 and 16: the tiles before K splits and PDL, the default
    tiles without PDL, and the PDL tiles with PDL (Hopper). With ``--sweep``, then the tiles and
    K splits of each matmul, one matrix at a time, the others kept, keeping the best of each (by
    the sum of the two) in turn. The weights' layout and the attention have ``attncfg``."""
    import dataclasses

    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder
    from voxgate_server.engines.chatterbox_fast.fused_step import CUDA_CONFIGS, PDL_CONFIGS, LinearConfig

    dec = BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=1, fused=True)
    f = dec._fused

    def measure() -> tuple[float, float]:
        return _recaptured_ms(dec, torch)

    previous = {"qkv": LinearConfig(32, 256), "proj": LinearConfig(16, 512), "fc": LinearConfig(32, 256),
                "fc2": LinearConfig(16, 512), "head": LinearConfig(64, 256)}  # before split K and PDL
    with torch.inference_mode():
        pdl = f.pdl
        f.configs, f.pdl = dict(previous), False
        r = measure()
        emit({"section": "fusedcfg", "previous_tiles_no_split_no_pdl": True, "b1_ms": round(r[0], 4),
              "b16_ms": round(r[1], 4)}, rows)
        f.configs = dict(CUDA_CONFIGS)
        r = measure()
        emit({"section": "fusedcfg", "cuda_configs_no_pdl": True, "b1_ms": round(r[0], 4), "b16_ms": round(r[1], 4)},
             rows)
        f.pdl = pdl
        f.configs = dict(PDL_CONFIGS if pdl else CUDA_CONFIGS)
        base = measure()
        emit({"section": "fusedcfg", "start": True, "pdl": f.pdl, "b1_ms": round(base[0], 4),
              "b16_ms": round(base[1], 4), "configs": {k: dataclasses.asdict(v) for k, v in f.configs.items()}}, rows)
        best_sum = sum(base)
        for name in ("fc2", "fc", "qkv", "proj", "head") if args.sweep else ():
            K = 4096 if name == "fc2" else 1024
            best = (best_sum, f.configs[name])
            for split in (1, 2, 4, 8):
                for bn in (16, 32, 64):
                    for warps in (4, 8):
                        if bn * K // split > 32768:  # a program's weights would not fit its registers
                            continue
                        cfg = LinearConfig(bn, K // split, warps, 3, split)  # one block of K: PDL reads it early
                        f.configs[name] = cfg
                        try:
                            r = measure()
                        except Exception as exc:  # noqa: BLE001 - a tile that does not compile
                            emit({"section": "fusedcfg", "matrix": name, "config": dataclasses.asdict(cfg),
                                  "error": repr(exc)[:200]}, rows)
                            continue
                        emit({"section": "fusedcfg", "matrix": name, "config": dataclasses.asdict(cfg),
                              "b1_ms": round(r[0], 4), "b16_ms": round(r[1], 4)}, rows)
                        if sum(r) < best[0]:
                            best = (sum(r), cfg)
            f.configs[name] = best[1]
            best_sum = best[0]
            emit({"section": "fusedcfg", "matrix": name, "best": dataclasses.asdict(best[1]),
                  "b1_plus_b16_ms": round(best[0], 4)}, rows)
        final = measure()
        emit({"section": "fusedcfg", "final": True, "b1_ms": round(final[0], 4),
              "b16_ms": round(final[1], 4),
              "configs": {k: dataclasses.asdict(v) for k, v in f.configs.items()}}, rows)
    dec._graphs.clear()
    torch.cuda.empty_cache()


def section_attncfg(model: Any, torch: Any, rows: list) -> None:
    """The weights' layout (GPT-2's ``[K, N]`` against the step's ``[N, K]`` copy), the
    attention's key block and warps, and how many programs its key splits aim for."""
    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder
    from voxgate_server.engines.chatterbox_fast.fused_step import ATTENTION_PROGRAMS, FusedDecodeStep
    from voxgate_server.engines.chatterbox_fast.sampling_kernel import FusedSampler

    plain = BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=1, fused=False)
    plain._fused = FusedDecodeStep(plain.model, transpose=False)
    plain._sampler = FusedSampler(plain.sampling)  # the fused step's sampling, as fused=True sets up
    plain.len_buckets = [768]
    with torch.inference_mode():
        r = _recaptured_ms(plain, torch)
    emit({"section": "attncfg", "weights": "[K, N] (not transposed)", "b1_ms": round(r[0], 4),
          "b16_ms": round(r[1], 4)}, rows)
    plain._graphs.clear()
    del plain
    torch.cuda.empty_cache()
    dec = BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=1, fused=True)
    f = dec._fused

    def measure() -> tuple[float, float]:
        return _recaptured_ms(dec, torch)

    with torch.inference_mode():
        best_a = (1e9, None)
        for bl in (64, 128, 256):
            for warps in (2, 4):
                f.block_l, f.attn_warps = bl, warps
                r = measure()
                if sum(r) < best_a[0]:
                    best_a = (sum(r), (bl, warps))
        f.block_l, f.attn_warps = best_a[1]
        emit({"section": "attncfg", "attention_best": best_a[1], "b1_plus_b16_ms": round(best_a[0], 4)}, rows)
        for programs in (16, 32, 64, 128, 256, 512):  # key splits: (row, head) pairs x splits ~ programs
            f.attention_programs = programs
            r = measure()
            emit({"section": "attncfg", "attention_programs": programs, "splits_b1": f.splits(1),
                  "splits_b16": f.splits(16), "b1_ms": round(r[0], 4), "b16_ms": round(r[1], 4)}, rows)
        f.attention_programs = ATTENTION_PROGRAMS
    dec._graphs.clear()
    torch.cuda.empty_cache()


def section_s3mem(model: Any, torch: Any, rows: list) -> None:
    """Peak memory and wall of S3Gen's batched calls: 16 pieces at once against 2 x 8 (what a
    frame budget does), for the shapes of the last chunk at 16 concurrent."""
    from voxgate_server.engines.chatterbox_fast.s3gen_worker import (S3GenWorker, _FlowJob, _HiftJob, _flow_tokens,
                                                                     _hift_frames)

    g = torch.Generator().manual_seed(0)
    ref = model.conds.gen
    worker = S3GenWorker(model.s3gen)
    toks = [torch.randint(0, 6561, (224,), generator=g).tolist() for _ in range(16)]
    with torch.inference_mode():
        fj = [_FlowJob(t, ref) for t in toks[:1]]
        worker._flow_batch(fj)
        mel = fj[0].future.result()
        # the same 8 pieces with the same noise, matmuls in float32 and in TF32 (what --tf32 changes)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        mels = []
        for allow in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.manual_seed(0)
            jobs = [_FlowJob(t, ref) for t in toks[:8]]
            worker._flow_batch(jobs)
            mels.append(torch.stack([j.future.result() for j in jobs]))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        emit({"section": "s3mem", "tf32_mel_rel_diff": round(((mels[1] - mels[0]).norm() / mels[0].norm()).item(), 6),
              "tf32": tf32}, rows)
        for stage in ("flow", "hift"):
            for split in (1, 2, 4):
                per = 16 // split
                walls, peaks = [], []
                for rep in range(3):
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                    for k in range(split):
                        if stage == "flow":
                            jobs = [_FlowJob(t, ref) for t in toks[k * per:(k + 1) * per]]
                            worker._flow_batch(jobs)
                        else:
                            jobs = [_HiftJob(mel, None) for _ in range(per)]
                            worker._hift_batch(jobs)
                        for j in jobs:
                            j.future.result()
                        del jobs
                    torch.cuda.synchronize()
                    walls.append((time.perf_counter() - t0) * 1000)
                    peaks.append((torch.cuda.max_memory_allocated() - base) / 2**30)
                emit({"section": "s3mem", "tf32": tf32, "stage": stage, "pieces": 16, "calls": split,
                      "frames_per_piece": (2 * _flow_tokens(_FlowJob(toks[0], ref)) if stage == "flow"
                                           else _hift_frames(_HiftJob(mel, None))),
                      "wall_ms": round(statistics.median(walls[1:]), 2), "peak_extra_gib": round(max(peaks), 3)}, rows)
    worker.close()


def section_flowprof(model: Any, torch: Any, rows: list) -> None:
    """Where a batched flow call's GPU time goes (16 last-chunk pieces, eager, as the worker runs
    a large batch), and what the estimator's attention in half precision and autocast change:
    wall, kernel time, peak memory, and how far the voiced frames' mel moves (same noise),
    against how far other noise moves it."""
    from contextlib import nullcontext

    from torch.profiler import ProfilerActivity, profile

    from voxgate_server.engines.chatterbox_fast import flow_attention
    from voxgate_server.engines.chatterbox_fast.flow_graph import FlowRunner, _FlowInputs

    flow = model.s3gen.flow
    est = flow.decoder.estimator
    ref = model.conds.gen
    runner = FlowRunner(flow, graph_batch=0)
    prompt = ref["prompt_token"].to("cuda").reshape(-1)
    a = int(ref["prompt_feat"].shape[1])
    g = torch.Generator().manual_seed(0)
    for pieces, n in ((16, 224), (1, 12), (1, 224)):
        toks = [torch.randint(0, 6561, (n,), generator=g).tolist() for _ in range(pieces)]
        inputs = _FlowInputs.empty(pieces, int(prompt.shape[0]) + n, torch.device("cuda"))
        torch.manual_seed(0)
        runner._fill(inputs, toks, ref, prompt)
        other = _FlowInputs(inputs.tokens, inputs.lens, inputs.cond, inputs.spks, torch.randn_like(inputs.z))
        variants = [("fp32 (TF32 matmuls if set)", None, None), ("attention fp16", torch.float16, None),
                    ("attention bf16", torch.bfloat16, None), ("autocast bf16", None, torch.bfloat16),
                    ("autocast fp16", None, torch.float16), ("attention fp16 + autocast fp16", torch.float16,
                                                             torch.float16)]
        base = None
        with torch.inference_mode():
            for name, attn_dtype, auto in variants:
                changed = flow_attention.install(est, attn_dtype)
                ctx = (lambda: torch.autocast("cuda", dtype=auto, cache_enabled=False)) if auto else nullcontext

                def call(x: Any = inputs) -> Any:
                    with ctx():
                        return runner._mel(x)[:, :, a:a + 2 * n].float()

                try:
                    wall_ms, out = median_call_ms(call)
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        call()
                        torch.cuda.synchronize()
                    peak = (torch.cuda.max_memory_allocated() - before) / 2**30
                    kernel_ms, kernels, top = _kernel_top(prof, 14 if base is None else 6)
                    row = {"section": "flowprof", "pieces": pieces, "tokens": n, "variant": name,
                           "attention_blocks_changed": changed if attn_dtype is not None else 0,
                           "wall_ms": round(wall_ms, 2), "kernel_ms": round(kernel_ms, 3),
                           "kernels": kernels, "peak_extra_gib": round(peak, 3),
                           "finite": bool(torch.isfinite(out).all())}
                    if base is None:
                        base = out
                        moved = call(other)
                        row["rel_diff_other_noise"] = round(float((moved - base).norm() / base.norm()), 6)
                    else:
                        row["rel_diff_vs_fp32"] = round(float((out - base).norm() / base.norm()), 6)
                        row["max_abs_diff_vs_fp32"] = round(float((out - base).abs().max()), 5)
                    row["top"] = top
                    emit(row, rows)
                except Exception as exc:  # noqa: BLE001 - the next variant still runs
                    emit({"section": "flowprof", "pieces": pieces, "variant": name, "error": repr(exc)[:600]}, rows)
                finally:
                    flow_attention.install(est, None)


def section_hiftprof(model: Any, torch: Any, rows: list) -> None:
    """Where a batched HiFT call's GPU time goes (the restated call, eager, the kernels its graph
    replays), for the shapes a burst of 16 meets: first chunks (16 x 64 frames), later pieces
    (8 x 448) and one piece; with the replayed graph's wall beside it."""
    from torch.profiler import ProfilerActivity, profile

    from voxgate_server.engines.chatterbox_fast import s3gen_syncfree
    from voxgate_server.engines.chatterbox_fast.hift_graph import HiftRunner

    s3gen_syncfree.install(model.s3gen)  # as the S3Gen worker does (HiFT's STFT window on the GPU)
    hift = model.s3gen.mel2wav
    g = torch.Generator(device="cuda").manual_seed(0)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.inference_mode():
        for fused in (False, True):
            eager, graphed = HiftRunner(hift, graph_batch=0), HiftRunner(hift, graph_batch=16)
            if not fused:
                eager.snake = graphed.snake = None
            for pieces, frames in ((16, 64), (8, 448), (1, 448), (1, 64)):
                mels = [torch.randn(80, frames, device="cuda", generator=g) * 2 - 6 for _ in range(pieces)]
                caches = [None] * pieces

                eager_ms, graph_ms = (median_call_ms(lambda r=r: r.run(mels, caches))[0] for r in (eager, graphed))
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    eager.run(mels, caches)
                    torch.cuda.synchronize()
                kernel_ms, kernels, top = _kernel_top(prof, 16 if not fused else 6)
                row = {"section": "hiftprof", "fused_snake": eager.snake is not None, "pieces": pieces,
                       "frames": frames, "eager_wall_ms": round(eager_ms, 2), "graph_wall_ms": round(graph_ms, 2),
                       "kernel_ms": round(kernel_ms, 3), "kernels": kernels, "top": top}
                if fused:  # the same draws through PyTorch's Snake: how far the wave moves
                    plain = HiftRunner(hift, graph_batch=0)
                    plain.snake = None
                    waves = []
                    for r in (plain, eager):
                        torch.manual_seed(5)
                        waves.append(r.run(mels, caches)[0].clone())
                    n = 480 * frames
                    row["wave_rel_diff_vs_pytorch_snake"] = float((waves[1][:, :n] - waves[0][:, :n]).norm()
                                                                  / waves[0][:, :n].norm())
                emit(row, rows)


T3_VARIANTS = {"plain": {"fused": False}, "fused": {"fused": True}, "compiled": {"fused": False, "compile": True}}


def section_t3step(model: Any, torch: Any, args: argparse.Namespace, rows: list) -> None:
    """The decode step's variants (``--t3-variants``: plain graphs, the fused Triton step,
    torch.compile), graphs captured around each: set-up time, GPU time of a step, scheduler
    speed, and greedy tokens against the plain step of the same dtype."""
    from chatterbox.tts_turbo import punc_norm

    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder, SamplingParams

    ids = model.tokenizer(punc_norm(TEXT), return_tensors="pt").input_ids
    greedy = SamplingParams(temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2)
    n = args.tokens + 1
    names = args.t3_variants.split(",")
    toks: dict[tuple[str, str], list[int]] = {}
    for dtype in (torch.bfloat16, torch.float32):
        for name in names:
            row: dict[str, Any] = {"section": "t3step", "variant": name, "dtype": str(dtype)}
            try:
                t0 = time.perf_counter()
                dec = BatchedT3Decoder(model.t3, max_batch=16, max_len=768, dtype=dtype, **T3_VARIANTS[name]).start()
                dec.warmup()
                row["setup_s"] = round(time.perf_counter() - t0, 2)
                toks[(str(dtype), name)] = dec.submit(model.conds.t3, ids, greedy, n).result(900)
                if dtype == torch.bfloat16:
                    for B in (1, 16):
                        row[f"replay_b{B}_ms_per_step"] = round(graph_ms_per_step(dec, B, 512), 4)
                    t0 = time.perf_counter()
                    got = dec.submit(model.conds.t3, ids, SamplingParams(), n).result(600)
                    row["one_stream_ms_per_token"] = round((time.perf_counter() - t0) * 1000 / len(got), 4)
                    steps0 = dec.steps
                    t0 = time.perf_counter()
                    streams = [dec.submit(model.conds.t3, ids, SamplingParams(seed=i), n) for i in range(16)]
                    total = sum(len(s.result(600)) for s in streams)
                    dt = time.perf_counter() - t0
                    row["b16_ms_per_step"] = round(1000 * dt / max(1, dec.steps - steps0), 4)
                    row["b16_tokens_per_s"] = round(total / dt, 1)
                ref = toks.get((str(dtype), names[0]))
                got = toks[(str(dtype), name)]
                if name != names[0] and ref is not None:
                    row[f"greedy_equal_to_{names[0]}"] = got == ref
                    row["greedy_prefix_match"] = prefix_match(got, ref)
                dec.close()
                del dec
                torch.cuda.empty_cache()
            except Exception as exc:  # noqa: BLE001
                row["error"] = repr(exc)[:800]
            emit(row, rows)


def section_syncs(model: Any, torch: Any, rows: list) -> None:
    """Where S3Gen's flow and HiFT synchronise with the host (what stops a CUDA graph capture):
    each synchronising op, by the Python line that called it, under torch's sync debug mode."""
    import warnings

    from voxgate_server.engines.chatterbox_fast.s3gen_worker import S3GenWorker, _FlowJob, _HiftJob

    worker = S3GenWorker(model.s3gen, graph_batch=0)  # eager: what a capture would meet
    ref = model.conds.gen
    with torch.inference_mode():
        for name, make, fn in (
            ("flow_b1", lambda: [_FlowJob(list(range(100, 140)), ref)], worker._flow_batch),
            ("flow_b2", lambda: [_FlowJob(list(range(100, 140)), ref), _FlowJob(list(range(100, 120)), ref)],
             worker._flow_batch),
            ("hift_b1", lambda: [_HiftJob(torch.randn(80, 60, device="cuda"), None)], worker._hift_batch),
        ):
            fn(make())  # warm
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode(1)
                try:
                    fn(make())
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            where: dict[str, int] = {}
            for w in caught:
                if "synchroniz" in str(w.message):
                    key = f"{w.filename.split('site-packages/')[-1]}:{w.lineno}"
                    where[key] = where.get(key, 0) + 1
            emit({"section": "syncs", "call": name, "sync_points": where}, rows)
    worker.close()


def section_flowgraph(model: Any, torch: Any, rows: list) -> None:
    """S3Gen flow calls as they were (upstream's ``flow_inference``, sync-free masks), restated and
    eager (``flow_graph.flow_mel``), and replayed as CUDA graphs: wall per call, the graphs' capture
    time and memory, and the replayed mel against upstream's with the same noise."""
    from voxgate_server.engines.chatterbox_fast import s3gen_syncfree
    from voxgate_server.engines.chatterbox_fast.flow_graph import FlowRunner
    from voxgate_server.engines.chatterbox_fast.graph_cache import bucket, pow2
    from voxgate_server.engines.chatterbox_fast.hift_graph import HiftRunner

    s3gen_syncfree.install(model.s3gen)
    flow = model.s3gen.flow
    ref = model.conds.gen
    n_prompt = int(ref["prompt_token"].shape[-1])
    g = torch.Generator().manual_seed(0)
    eager, graphed = FlowRunner(flow, graph_batch=0), FlowRunner(flow, graph_batch=4)
    sync = torch.cuda.synchronize

    def wall(fn: Any) -> float:
        return round(median_call_ms(fn, warm=1)[0], 2)  # six calls, the first untimed

    with torch.inference_mode():
        for n, b in ((15, 1), (63, 1), (150, 1), (283, 1), (63, 2), (150, 2), (150, 4), (150, 16)):
            toks = [torch.randint(0, 6561, (n,), generator=g).tolist() for _ in range(b)]
            dev_toks = torch.tensor(toks, device="cuda")
            lens = torch.full((b,), n, device="cuda")

            def upstream() -> None:
                model.s3gen.flow_inference(dev_toks, speech_token_lens=lens, ref_dict=dict(ref),
                                           n_cfm_timesteps=2, finalize=True)

            row = {"section": "flowgraph", "tokens": n, "batch": b, "upstream_ms": wall(upstream),
                   "eager_ms": wall(lambda: eager.run(toks, ref))}
            if b <= graphed.graph_batch:
                before, t0 = torch.cuda.memory_reserved(), time.perf_counter()
                graphed.run(toks, ref)
                sync()
                row["capture_s"] = round(time.perf_counter() - t0, 3)
                row["capture_reserved_mib"] = round((torch.cuda.memory_reserved() - before) / 2**20, 1)
                row["graph_ms"] = wall(lambda: graphed.run(toks, ref))
                # the last replay's own inputs, through upstream's call with the same noise
                gr = graphed.graphs.get((pow2(b), bucket(n_prompt + n, FlowRunner.width_step)))
                replayed = gr.out[0, :, 2 * n_prompt:2 * (n_prompt + n)].clone()
                again = graphed._mel(gr.inputs)
                row["graph_vs_eager_rel"] = float((again[0, :, 2 * n_prompt:2 * (n_prompt + n)] - replayed).norm()
                                                  / replayed.norm())
                z = gr.inputs.z[:1, :, :2 * (n_prompt + n)].clone()
                saved = torch.randn_like
                torch.randn_like = lambda t, **kw: z.clone()
                try:
                    want, _ = flow.inference(token=dev_toks[:1], token_len=lens[:1], finalize=True,
                                             noised_mels=z[:, :, 2 * n_prompt:], n_timesteps=2, meanflow=True,
                                             **{k: v for k, v in ref.items()})
                finally:
                    torch.randn_like = saved
                row["graph_vs_upstream_rel"] = float((want[0] - replayed).norm() / want[0].norm())
            emit(row, rows)
    emit({"section": "flowgraph", "graphs": len(graphed.graphs), "captures": graphed.graphs.captures}, rows)
    # HiFT: upstream's inference (one piece), the restated call eagerly, and its graphs
    hift = model.s3gen.mel2wav
    heager, hgraphed = HiftRunner(hift, graph_batch=0), HiftRunner(hift, graph_batch=4)
    with torch.inference_mode():
        for frames, b in ((24, 1), (86, 1), (300, 1), (538, 1), (86, 2), (300, 4)):
            mels = [torch.randn(80, frames, device="cuda") - 5 for _ in range(b)]
            row = {"section": "hiftgraph", "frames": frames, "batch": b,
                   "eager_ms": wall(lambda: heager.run(mels, [None] * b))}
            if b == 1:
                row["upstream_ms"] = wall(lambda: hift.inference(mels[0][None]))
            before, t0 = torch.cuda.memory_reserved(), time.perf_counter()
            hgraphed.run(mels, [None] * b)
            sync()
            row["capture_s"] = round(time.perf_counter() - t0, 3)
            row["capture_reserved_mib"] = round((torch.cuda.memory_reserved() - before) / 2**20, 1)
            row["graph_ms"] = wall(lambda: hgraphed.run(mels, [None] * b))
            entry = hgraphed.graphs.get((pow2(b), bucket(frames, HiftRunner.frame_step)))
            replayed = entry.out[0][0, :480 * frames].clone()
            again = hgraphed._wave(entry.inputs)[0][0, :480 * frames]
            row["graph_vs_eager_rel"] = float((again - replayed).norm() / replayed.norm())
            emit(row, rows)


def section_flow(model: Any, torch: Any, rows: list) -> None:
    from voxgate_server.engines.chatterbox_fast.s3gen_worker import S3GenWorker, _FlowJob

    g = torch.Generator().manual_seed(0)
    ref = model.conds.gen
    with torch.inference_mode():
        for bf16 in (False, True):
            worker = S3GenWorker(model.s3gen, flow_bf16=bf16, graph_batch=0)
            for n, b in ((36, 1), (120, 1), (36, 16), (200, 16)):
                toks = [torch.randint(0, 6561, (n,), generator=g).tolist() for _ in range(b)]
                walls = []
                mel = None
                for rep in range(4):
                    jobs = [_FlowJob(t, ref) for t in toks]
                    torch.manual_seed(1)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    worker._flow_batch(jobs)
                    torch.cuda.synchronize()
                    if rep:
                        walls.append((time.perf_counter() - t0) * 1000)
                    mel = jobs[0].future.result()
                key = (n, b)
                row = {"section": "flow", "bf16": bf16, "tokens": n, "batch": b,
                       "wall_ms": round(statistics.median(walls), 2)}
                if bf16:
                    base = _FLOW_REF.get(key)
                    if base is not None:
                        row["rel_err_vs_fp32"] = round(float((mel - base).norm() / base.norm()), 5)
                else:
                    _FLOW_REF[key] = mel.clone()
                emit(row, rows)
            worker.close()
    row = {"section": "flow", "noise_floor": True}
    with torch.inference_mode():  # two fp32 calls with different noise: how much the noise alone moves the mel
        worker = S3GenWorker(model.s3gen)
        mels = []
        for seed in (1, 2):
            jobs = [_FlowJob(list(range(200, 236)), ref)]
            torch.manual_seed(seed)
            worker._flow_batch(jobs)
            mels.append(jobs[0].future.result())
        row["rel_diff_other_noise_fp32"] = round(float((mels[0] - mels[1]).norm() / mels[0].norm()), 5)
        worker.close()
    emit(row, rows)


_FLOW_REF: dict[tuple[int, int], Any] = {}


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
        from voxgate_server.engines.chatterbox_fast.flow_graph import FlowRunner
        from voxgate_server.engines.chatterbox_fast.hift_graph import HiftRunner, fused_snake_for

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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--json", default=None)
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--sections", default="mem,t3prof,t3,flow,clips")
    p.add_argument("--sweep", action="store_true", help="fusedcfg: search each matmul's tiles and K splits")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls process-wide (what FastTurbo(tf32=True) sets)")
    p.add_argument("--t3-variants", default="plain,fused", help="for t3step: " + ",".join(T3_VARIANTS))
    p.add_argument("--variant", dest="variants", action="append",
                   default=None, help='JSON FastTurbo kwargs for the clips section (repeatable); '
                                      '"switch_interval_ms" sets the GIL switch interval, '
                                      '"flow_batch_width_step" / "hift_batch_frame_step" the batched '
                                      'S3Gen graphs\' padding steps')
    args = p.parse_args()
    args.variants = args.variants or ['{"decode_ahead": 1}', '{"decode_ahead": 2}']
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    model = ChatterboxTurboTTS.from_local(args.ckpt, device="cuda")
    rows: list[dict[str, Any]] = []
    sections = args.sections.split(",")
    for name, fn in (("mem", lambda: section_mem(model, torch, rows)),
                     ("t3prof", lambda: section_t3prof(model, torch, rows)),
                     ("fusedcfg", lambda: section_fusedcfg(model, torch, args, rows)),
                     ("attncfg", lambda: section_attncfg(model, torch, rows)),
                     ("s3mem", lambda: section_s3mem(model, torch, rows)),
                     ("flowprof", lambda: section_flowprof(model, torch, rows)),
                     ("hiftprof", lambda: section_hiftprof(model, torch, rows)),
                     ("t3step", lambda: section_t3step(model, torch, args, rows)),
                     ("syncs", lambda: section_syncs(model, torch, rows)),
                     ("flow", lambda: section_flow(model, torch, rows)),
                     ("flowgraph", lambda: section_flowgraph(model, torch, rows)),
                     ("t3", lambda: section_t3(model, torch, args, rows)),
                     ("clips", lambda: section_clips(model, torch, args, rows))):
        if name in sections:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - the other sections still run
                emit({"section": name, "error": repr(exc)[:800]}, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
