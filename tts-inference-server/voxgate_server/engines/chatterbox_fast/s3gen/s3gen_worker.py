"""One thread that runs S3Gen for every streaming request, batching what is waiting.

S3Gen (flow: tokens -> mel; HiFT: mel -> wave) costs about the same per call whether it
voices 20 tokens or 200, and with many requests each calling it from its own thread the calls
also fight over the GIL. So requests queue their pieces here and the worker runs each stage
once for all of them: flow jobs of the same voice are padded into one batch, HiFT jobs into
another (each item keeps its own excitation carry-over); both stages are restated so that a
padded row gives exactly what the row alone would (``flow_graph.py``, ``hift_graph.py``).
Calls of up to ``graph_batch`` pieces replay CUDA graphs, one per (rows, width) bucket: a call
run eagerly is thousands of kernel launches from Python whatever its size (85-194 ms a flow
call under 16 streams on an H200, against 18-64 ms replayed), and holds the GIL meanwhile.
Everything runs on the worker's own CUDA stream, overlapping the T3 decoder's.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from voxgate_server.engines.chatterbox_fast.s3gen import flow_attention, s3gen_syncfree
from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import MEL_PER_TOKEN, FlowRunner
from voxgate_server.engines.chatterbox_fast.s3gen.graph_cache import first_needed, pow2, shapes_within
from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner

SAMPLES_PER_MEL = 480


@dataclass
class _FlowJob:
    tokens: list[int]
    ref: dict
    future: cf.Future = field(default_factory=cf.Future)


@dataclass
class _HiftJob:
    mel: torch.Tensor  # [80, frames]
    cache: torch.Tensor | None  # [n] excitation of the overlap, or None
    future: cf.Future = field(default_factory=cf.Future)


@dataclass
class _CallJob:
    """Work that must run on the worker's thread by itself: a graph capture of one exact shape."""
    fn: Callable[[], Any]
    future: cf.Future = field(default_factory=cf.Future)


def split_batches(jobs: list[Any], width: Callable[[Any], int], max_batch: int, max_frames: int | None,
                  frames: Callable[[int, int], int] = lambda n, w: n * w) -> list[list[Any]]:
    """``jobs`` cut into calls of at most ``max_batch`` pieces and ``max_frames`` mel frames, where
    a call of ``n`` pieces, the widest ``w``, holds ``frames(n, w)`` (``n * w``; more where the
    call is padded to a graph's shape). Shortest first, so pieces of like length pad least; a
    piece over the budget alone goes alone."""
    out: list[list[Any]] = []
    cur: list[Any] = []
    for job in sorted(jobs, key=width):
        w = width(job)  # sorted: the newest piece is the widest
        if cur and (len(cur) >= max_batch or (max_frames is not None and frames(len(cur) + 1, w) > max_frames)):
            out.append(cur)
            cur = []
        cur.append(job)
    if cur:
        out.append(cur)
    return out


def _flow_tokens(job: _FlowJob) -> int:
    """Tokens into the flow: the voice's prompt and the piece."""
    return int(job.ref["prompt_token"].shape[-1]) + len(job.tokens)


def _hift_frames(job: _HiftJob) -> int:
    return int(job.mel.shape[-1])


class S3GenWorker:
    def __init__(self, s3gen: torch.nn.Module, *, n_cfm_timesteps: int = 2, max_batch: int = 32,
                 threads: int = 1, window_ms: float = 4.0, max_frames: int | None = None,
                 flow_bf16: bool = False, graph_batch: int = 16, attention: str = "fp16") -> None:
        attention_dtype = flow_attention.dtype_for(attention)
        self.s3gen = s3gen
        # Activation memory grows with pieces x padded frames (the flow's attention with its
        # square): one call holds at most this many (pieces x widest piece's mel frames, the
        # voice's prompt included for the flow). Past it a batch is split; batched calls are
        # GPU-bound, so two halves cost about what the whole did. None: only ``max_batch``.
        self.max_frames = max_frames
        # HiFT's restated batch call holds ~1.7x the flow's activations per frame (H200, 16 pieces
        # of a last chunk: flow 1.66 GiB for 8 x 948 frames, HiFT 2.73 GiB for 16 x 448), so it
        # gets half the budget; two HiFT calls took the time of one (106 vs 105 ms)
        self.hift_max_frames = max_frames // 2 if max_frames else None
        # bf16 autocast for the flow (conformer + meanflow estimator), as CosyVoice's own fp16 mode
        # runs its flow; batched it is bound by float32 arithmetic. Off by default: on random
        # weights it moved the mel by 16-19% in an earlier measurement and by 5.4e-3 in the flowprof
        # one (docs/gpu-performance.md; the two disagree, unexplained); unmeasured on real ones
        self.flow_bf16 = flow_bf16 and s3gen.device.type == "cuda"
        s3gen_syncfree.install(s3gen)
        # the flow estimator's attention with Q, K, V in float16 (``flow_attention.py``): on an H200
        # 16 batched pieces' attention took 114 of 185 ms of kernels in float32, 16 ms so; the mel
        # moved 6.4e-4 (relative), as much as TF32 matmuls move it. "fp32": upstream's processor
        if s3gen.device.type == "cuda":
            flow_attention.install(s3gen.flow.decoder.estimator, attention_dtype)
        # flow and HiFT calls of at most this many pieces replay CUDA graphs; 0: always eager
        # (the frame budgets above count a graphed call's padded shape)
        self.graph_batch = graph_batch
        self.n_cfm_timesteps = n_cfm_timesteps
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self._q: queue.Queue[Any] = queue.Queue()
        self._local = threading.local()
        # True while warm_graphs runs (after ready): real pieces then never capture, see there
        self.warming = False
        self.stats: dict[str, float] = {"flow_calls": 0, "flow_items": 0, "flow_s": 0.0,
                                        "hift_calls": 0, "hift_items": 0, "hift_s": 0.0,
                                        "flow_graphs": 0, "hift_graphs": 0}
        self._stats_lock = threading.Lock()
        # a list to record each call into, as (stage, pieces, replayed as a graph, graphs captured
        # by it, start, end) in perf_counter seconds (the GPU bench's burst timeline); None: nothing
        self.trace: list[tuple[str, int, bool, int, float, float]] | None = None
        # More than one thread (each with its own CUDA stream) is possible; measured on an H200
        # it did not raise throughput (the calls are host-bound) and doubled the memory pools.
        self._threads = [threading.Thread(target=self._run, name=f"s3gen-worker-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self._q.put(None)
        for t in self._threads:
            t.join(timeout=10)

    def flow(self, tokens: list[int], ref: dict) -> cf.Future:
        """Future of the mel [80, 2*len(tokens)] (float32, on the device) of ``tokens`` after the
        voice's prompt, computed as upstream's final (``finalize=True``) flow pass."""
        job = _FlowJob(list(tokens), ref)
        self._q.put(job)
        return job.future

    def hift(self, mel: torch.Tensor, cache: torch.Tensor | None) -> cf.Future:
        """Future of (samples float32 numpy [480*frames], excitation tensor [480*frames])."""
        job = _HiftJob(mel, cache)
        self._q.put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> cf.Future:
        """Future of ``fn()`` run on the worker's thread, between (never inside) its batched calls."""
        job = _CallJob(fn)
        self._q.put(job)
        return job.future

    # -- worker ------------------------------------------------------------------------------------

    def _run(self) -> None:
        dev = self.s3gen.device
        stream = torch.cuda.Stream(dev) if dev.type == "cuda" else None
        self._local.stream = stream
        ctx = torch.cuda.stream(stream) if stream is not None else _Null()
        with ctx, torch.inference_mode():
            while True:
                item = self._q.get()
                if item is None:
                    self._q.put(None)
                    return
                jobs = [item]
                # Requests decoded in one T3 batch reach their chunk boundaries together, but
                # hand their pieces over one by one: wait a few ms for the rest of the group.
                deadline = time.perf_counter() + self.window_s
                while len(jobs) < 4 * self.max_batch:
                    try:
                        nxt = self._q.get(timeout=max(0.0, deadline - time.perf_counter()))
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._q.put(None)  # let the other threads see it too
                        break
                    jobs.append(nxt)
                flows = [j for j in jobs if isinstance(j, _FlowJob)]
                hifts = [j for j in jobs if isinstance(j, _HiftJob)]
                by_voice: dict[int, list[_FlowJob]] = {}
                for j in flows:
                    by_voice.setdefault(id(j.ref["prompt_token"]), []).append(j)
                flow_frames = self.flow_runner().call_frames
                for group in by_voice.values():
                    for batch in split_batches(group, _flow_tokens, self.max_batch, self.max_frames, flow_frames):
                        self._guard(self._flow_batch, batch)
                hift_frames = self.hift_runner().call_frames
                for batch in split_batches(hifts, _hift_frames, self.max_batch, self.hift_max_frames, hift_frames):
                    self._guard(self._hift_batch, batch)
                for call in (j for j in jobs if isinstance(j, _CallJob)):
                    try:
                        call.future.set_result(call.fn())
                    except Exception as exc:  # noqa: BLE001 - handed to the caller
                        call.future.set_exception(exc)

    def _guard(self, fn: Any, jobs: list[Any]) -> None:
        try:
            fn(jobs)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)

    def _sync(self) -> None:
        stream = getattr(self._local, "stream", None)
        if stream is not None:
            stream.synchronize()

    def _count(self, stage: str, items: int, t0: float, graphs: int, captured: int, replayed: bool) -> None:
        t1 = time.perf_counter()
        seconds = t1 - t0
        if self.trace is not None:
            self.trace.append((stage, items, replayed, captured, t0, t1))
        with self._stats_lock:
            self.stats[f"{stage}_calls"] += 1
            self.stats[f"{stage}_items"] += items
            self.stats[f"{stage}_s"] += seconds
            self.stats[f"{stage}_graphs"] = graphs  # captured so far (this thread's)

    def _graph_pool(self) -> Any:
        """This thread's CUDA graph memory pool, shared by its flow and HiFT graphs: they run one
        after another on this thread, and each call's output is copied out before the next."""
        pool = getattr(self._local, "pool", None)
        if pool is None and self.s3gen.device.type == "cuda":
            pool = self._local.pool = torch.cuda.graph_pool_handle()
        return pool

    def flow_runner(self) -> FlowRunner:
        """This thread's flow runner (its graphs are captured on, and replayed from, one thread)."""
        runner = getattr(self._local, "runner", None)
        if runner is None:
            runner = FlowRunner(self.s3gen.flow, n_timesteps=self.n_cfm_timesteps,
                                graph_batch=self.graph_batch, bf16=self.flow_bf16, graph_pool=self._graph_pool())
            self._local.runner = runner
        return runner

    def hift_runner(self) -> HiftRunner:
        """This thread's HiFT runner (graphs, like the flow's, belong to one thread)."""
        runner = getattr(self._local, "hift_runner", None)
        if runner is None:
            runner = HiftRunner(self.s3gen.mel2wav, graph_batch=self.graph_batch, graph_pool=self._graph_pool())
            self._local.hift_runner = runner
        return runner

    def warm_graphs(self, ref: dict, longest: int, widest: int) -> None:
        """Capture now, rather than at the first request that needs it (a capture costs ~3 calls),
        every graph ``graph_shapes`` names for this voice."""
        if not self.graph_batch or self.s3gen.device.type != "cuda":
            return
        n_prompt = int(ref["prompt_token"].shape[-1])
        flows, hifts = self.graph_shapes(ref, longest, widest)
        # each shape as one call of exactly ``rows`` pieces, run on the worker's thread on its own:
        # queued as pieces, real requests' pieces (the warm-up can run while requests are served)
        # would join the batch and the shape captured would be another
        # Meanwhile real requests' pieces whose shape is not captured yet run eagerly (one call;
        # capturing it on the spot costs three, and made the first request after ready wait
        # 0.7 s for its first byte, bench/results/launch-2026-12-03/run5).
        self.warming = True
        try:
            for rows, width in first_needed(flows):
                piece = [0] * max(1, min(width - n_prompt, longest))
                jobs = [_FlowJob(list(piece), ref) for _ in range(rows)]
                self.call(lambda jobs=jobs: self._flow_batch(jobs, capture=True)).result()
            for rows, frames in first_needed(hifts):
                mel = torch.zeros(80, min(frames, widest), device=self.s3gen.device)
                jobs = [_HiftJob(mel, None) for _ in range(rows)]
                self.call(lambda jobs=jobs: self._hift_batch(jobs, capture=True)).result()
        finally:
            self.warming = False
        # the captures' eager warm-up runs left their activations cached outside the graphs' pool
        torch.cuda.empty_cache()

    def graph_shapes(self, ref: dict, longest: int, widest: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(rows, width) of every graph a stream of this voice can meet, largest first: the flow's
        for pieces of up to ``longest`` tokens after the voice's prompt, HiFT's for pieces of up
        to ``widest`` mel frames; one piece, and each batch bucket up to ``graph_batch`` pieces at
        the widths the frame budget admits."""
        n_prompt = int(ref["prompt_token"].shape[-1])
        rows = pow2(min(self.graph_batch, self.max_batch))
        flows = shapes_within(FlowRunner.width_step, FlowRunner.batch_width_step, n_prompt + 1, n_prompt + longest,
                              rows, MEL_PER_TOKEN, self.max_frames)
        hifts = shapes_within(HiftRunner.frame_step, HiftRunner.batch_frame_step, 1, widest, rows, 1,
                              self.hift_max_frames)
        return flows, hifts

    def _may_capture(self, capture: bool | None) -> bool:
        """Whether a call may capture a missing graph: as told (the warm-up's own calls), else
        not while ``warm_graphs`` runs (real pieces then run a missing shape eagerly)."""
        return not self.warming if capture is None else capture

    def _flow_batch(self, jobs: list[_FlowJob], capture: bool | None = None) -> None:
        t0 = time.perf_counter()
        runner = self.flow_runner()
        before = len(runner.graphs)
        mels = runner.run([j.tokens for j in jobs], jobs[0].ref, capture=self._may_capture(capture))
        self._sync()
        for j, mel in zip(jobs, mels):
            j.future.set_result(mel)
        self._count("flow", len(jobs), t0, len(runner.graphs), len(runner.graphs) - before, runner.last_replayed)

    def _hift_batch(self, jobs: list[_HiftJob], capture: bool | None = None) -> None:
        t0 = time.perf_counter()
        runner = self.hift_runner()
        before = len(runner.graphs)
        wav, src = runner.run([j.mel for j in jobs], [j.cache for j in jobs], capture=self._may_capture(capture))
        lens = [j.mel.shape[-1] * SAMPLES_PER_MEL for j in jobs]
        srcs = [src[i, :n].clone() for i, n in enumerate(lens)]  # the replay's output is reused
        out = wav.float().cpu().numpy()
        for i, j in enumerate(jobs):
            j.future.set_result((np.ascontiguousarray(out[i, :lens[i]]), srcs[i]))
        self._count("hift", len(jobs), t0, len(runner.graphs), len(runner.graphs) - before, runner.last_replayed)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None
