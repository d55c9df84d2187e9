"""Knobs bench, the T3 decoder's speed: ``t3`` (graph replay against the scheduler's ms per
token for each ``ahead``, with and without S3Gen flow calls on another thread) and ``t3step``
(the decode step's variants: plain graphs, fused Triton kernels, ``torch.compile``)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from bench.turbo.gpu_common import graph_ms_per_step, prefix_match, t3_burst_speed, t3_one_stream_ms_per_token
from bench.knobs.knobs_common import emit
from bench.turbo.turbo_clip import TEXT


class FlowLoad:
    """A thread making S3Gen flow calls back to back (1 piece of 36 tokens), as the engine's
    S3Gen worker does while T3 decodes."""

    def __init__(self, worker: Any, ref: dict, torch: Any) -> None:
        from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import _FlowJob

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
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker

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
                    one = t3_one_stream_ms_per_token(dec, model.conds.t3, ids, n)
                    b16_ms, b16_tps = t3_burst_speed(dec, model.conds.t3, ids, n, 16)
                finally:
                    calls = fl.stop() if fl else 0
                    sys.setswitchinterval(default_si)
                emit({"section": "t3", "ahead": ahead, "flow_thread": load, "switch_interval_ms": si * 1000,
                      "one_stream_ms_per_token": round(one, 4),
                      "b16_ms_per_step": round(b16_ms, 4),
                      "b16_tokens_per_s": round(b16_tps, 1), "flow_calls_meanwhile": calls}, rows)
        dec.close()
        del dec
        torch.cuda.empty_cache()
    worker.close()


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
                    row["one_stream_ms_per_token"] = round(t3_one_stream_ms_per_token(dec, model.conds.t3, ids, n), 4)
                    b16_ms, b16_tps = t3_burst_speed(dec, model.conds.t3, ids, n, 16)
                    row["b16_ms_per_step"] = round(b16_ms, 4)
                    row["b16_tokens_per_s"] = round(b16_tps, 1)
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
