"""Knobs bench, where S3Gen's GPU time goes: ``flowprof`` (a batched flow call's kernels, the
estimator's attention in half precision and autocast), ``hiftprof`` (a batched HiFT call's
kernels, PyTorch's Snake against the fused one) and ``syncs`` (where flow and HiFT wait for
the host, which is what stops a graph capture)."""

from __future__ import annotations

from typing import Any

from bench.turbo.gpu_common import median_call_ms
from bench.knobs.knobs_common import kernel_top, emit


def section_flowprof(model: Any, torch: Any, rows: list) -> None:
    """Where a batched flow call's GPU time goes (16 last-chunk pieces, eager, as the worker runs
    a large batch), and what the estimator's attention in half precision and autocast change:
    wall, kernel time, peak memory, and how far the voiced frames' mel moves (same noise),
    against how far other noise moves it."""
    from contextlib import nullcontext

    from torch.profiler import ProfilerActivity, profile

    from voxgate_server.engines.chatterbox_fast.s3gen import flow_attention
    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner, _FlowInputs

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
                    kernel_ms, kernels, top = kernel_top(prof, 14 if base is None else 6)
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

    from voxgate_server.engines.chatterbox_fast.s3gen import s3gen_syncfree
    from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner

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
                kernel_ms, kernels, top = kernel_top(prof, 16 if not fused else 6)
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


def section_syncs(model: Any, torch: Any, rows: list) -> None:
    """Where S3Gen's flow and HiFT synchronise with the host (what stops a CUDA graph capture):
    each synchronising op, by the Python line that called it, under torch's sync debug mode."""
    import warnings

    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker, _FlowJob, _HiftJob

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
