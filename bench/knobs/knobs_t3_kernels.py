"""Knobs bench, the fused decode step's kernels: ``t3prof`` (one step's kernels by GPU time),
``fusedcfg`` (its matmul tiles, K splits and PDL) and ``attncfg`` (the weights' layout and the
attention's key blocks and splits), each replayed as graphs at batch 1 and 16."""

from __future__ import annotations

import argparse
from typing import Any

from bench.turbo.gpu_common import graph_ms_per_step
from bench.knobs.knobs_common import kernel_top, emit


def section_t3prof(model: Any, torch: Any, rows: list) -> None:
    """Kernels of one eager decode step (the same kernels the graph replays), by total time."""
    from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder

    for fused in (False, True):
        _profile_step(BatchedT3Decoder(model.t3, max_batch=16, max_len=768, ahead=1, fused=fused), torch, rows)
        torch.cuda.empty_cache()


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
            kernel_ms, kernels, top = kernel_top(prof, 14)
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
    from voxgate_server.engines.chatterbox_fast.t3.fused_step import CUDA_CONFIGS, PDL_CONFIGS, LinearConfig

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
    from voxgate_server.engines.chatterbox_fast.t3.fused_step import ATTENTION_PROGRAMS, FusedDecodeStep
    from voxgate_server.engines.chatterbox_fast.t3.sampling_kernel import FusedSampler

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
