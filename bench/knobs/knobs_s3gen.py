"""Knobs bench, S3Gen's batched calls: ``s3mem`` (peak memory and wall, one call against split
calls, TF32), ``flow`` (float32 against bf16 autocast) and ``flowgraph`` (flow and HiFT replayed
as CUDA graphs against eager and upstream's calls)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.turbo.gpu_common import median_call_ms
from bench.knobs.knobs_common import emit


def section_s3mem(model: Any, torch: Any, rows: list) -> None:
    """Peak memory and wall of S3Gen's batched calls: 16 pieces at once against 2 x 8 (what a
    frame budget does), for the shapes of the last chunk at 16 concurrent."""
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import (S3GenWorker, _FlowJob, _HiftJob, _flow_tokens,
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


def section_flow(model: Any, torch: Any, rows: list) -> None:
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker, _FlowJob

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


def section_flowgraph(model: Any, torch: Any, rows: list) -> None:
    """S3Gen flow calls as they were (upstream's ``flow_inference``, sync-free masks), restated and
    eager (``flow_graph.flow_mel``), and replayed as CUDA graphs: wall per call, the graphs' capture
    time and memory, and the replayed mel against upstream's with the same noise."""
    from voxgate_server.engines.chatterbox_fast.s3gen import s3gen_syncfree
    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner
    from voxgate_server.engines.chatterbox_fast.s3gen.graph_cache import bucket, pow2
    from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner

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
