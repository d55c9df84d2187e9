"""``BatchedT3Decoder``: continuous batching of Turbo's speech-token generation.

One scheduler thread owns the GPU for T3. Each loop it (1) admits waiting requests into free
cache slots, running their prompts (conditioning + text + start token) in one eager prefill
(padded when several are admitted together) and sampling each one's first token; (2) launches
ONE decode step for every active slot together: on CUDA a captured graph is replayed (one per
batch bucket with the fused Triton step, ``fused_step.py``; per batch and length bucket with
the plain one), so a step is one launch instead of hundreds; (3) hands each request its new
token and retires the ones that hit the stop token, their cap, or cancellation. Requests
therefore join and leave the batch at step granularity. On CPU the same step runs eagerly in
float32 (what CI tests; the fused kernels under Triton's interpreter).

Steps are launched ``ahead`` deep: a step's input token is already on the device (the previous
step wrote it), so the next step is queued before the host reads the last one's tokens. The GPU
then never waits for the host's bookkeeping, nor for the GIL while another thread (the S3Gen
worker launching its kernels) holds it. The price: a request that stops is noticed up to
``ahead - 1`` steps late, and those steps' tokens for it are discarded.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from voxgate_server.engines.chatterbox_fast.t3 import fused_step
from voxgate_server.engines.chatterbox_fast.t3.fused_step import FusedDecodeStep
from voxgate_server.engines.chatterbox_fast.t3.gpt2_static import StaticGPT2
from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingParams, SamplingState, sample

log = logging.getLogger("voxgate.chatterbox_fast")

# positions mapped beyond what the next step needs, so the cache grows every few dozen steps
# rather than at each one (the driver's page holds 32 positions of 16 rows)
_GROW_AHEAD = 64
START_SPEECH_TOKEN = 6561
STOP_SPEECH_TOKEN = 6562
_END = object()


class DecodeCancelled(Exception):
    pass


class TokenStream:
    """Speech tokens of one request, as they are generated (stop token excluded)."""

    def __init__(self, max_new_tokens: int, cancel: threading.Event | None) -> None:
        self.max_new_tokens = max_new_tokens
        self._external = cancel  # the request's own event: read, never set here
        self._cancelled = threading.Event()
        self.tokens: list[int] = []
        self._q: queue.Queue[Any] = queue.Queue()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.t_submit = time.perf_counter()
        self.t_first: float | None = None
        self.t_done: float | None = None

    # producer side (scheduler thread)
    def _push(self, tok: int) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.tokens.append(tok)
        self._q.put(tok)

    def _finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.t_done = time.perf_counter()
        self.finished.set()
        self._q.put(_END)

    # consumer side
    def cancel(self) -> None:
        self._cancelled.set()

    def cancelled(self) -> bool:
        return self._cancelled.is_set() or (self._external is not None and self._external.is_set())

    def __iter__(self) -> Iterator[list[int]]:
        """Yield lists of new tokens (everything available at once), until done."""
        while True:
            item = self._q.get()
            batch: list[int] = []
            while True:
                if item is _END:
                    if batch:
                        yield batch
                    if self.error is not None:
                        raise self.error
                    return
                batch.append(item)
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            yield batch

    def result(self, timeout: float | None = None) -> list[int]:
        if not self.finished.wait(timeout):
            raise TimeoutError("decode did not finish")
        if self.error is not None:
            raise self.error
        return list(self.tokens)


@dataclasses.dataclass
class _Job:
    embeds: Tensor
    params: SamplingParams
    stream: TokenStream


@dataclasses.dataclass
class _Slot:
    job: _Job
    count: int = 0  # tokens handed to the request (the prefill's first one included)
    launched: int = 0  # decode steps launched for it (collected or not)


@dataclasses.dataclass
class _Launch:
    """One decode step in flight: which requests it served, and where its tokens land."""

    slots: list[tuple[int, _Slot]]
    host: Tensor  # [max_batch] next tokens, copied to (pinned) host memory
    event: Any  # torch.cuda.Event recorded after the copy, or None on CPU


def _bucket_sizes(limit: int) -> list[int]:
    out, b = [], 1
    while b < limit:
        out.append(b)
        b *= 2
    out.append(limit)
    return out


class BatchedT3Decoder:
    """Continuous-batching speech-token generator over an upstream ``T3`` module's weights."""

    def __init__(self, t3: torch.nn.Module, *, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, max_batch: int = 16, max_len: int = 1536,
                 cuda_graphs: bool | None = None, length_bucket: int = 256, compile: bool = False,
                 ahead: int | None = None, fused: bool | None = None, kv_grow: bool = True,
                 kv_idle_trim_s: float = 5.0) -> None:
        self.t3 = t3
        self.device = torch.device(device) if device is not None else t3.speech_head.weight.device
        on_cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_cuda else torch.float32)
        self.cuda_graphs = on_cuda if cuda_graphs is None else (cuda_graphs and on_cuda)
        self.max_batch = max_batch
        self.max_len = max_len
        self.length_bucket = length_bucket
        self.model = StaticGPT2(t3, device=self.device, dtype=self.dtype, max_batch=max_batch, max_len=max_len,
                                kv_grow=kv_grow)
        # a cache that grows on demand gives its memory back after this long with nothing to decode
        self.kv_idle_trim_s = kv_idle_trim_s
        self._idle_since: float | None = None
        # held while the caller's thread captures graphs (``warmup``): the scheduler must not trim
        # the cache under the eager steps run then
        self._kv_lock = threading.Lock()
        vocab = self.model.head_w.shape[0]
        self.vocab = vocab
        self.sampling = SamplingState(max_batch, vocab, self.device)
        self.tokens_buf = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.pos_buf = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.next_buf = torch.zeros(max_batch, dtype=torch.long, device=self.device)
        self.batch_buckets = _bucket_sizes(max_batch)
        self._fused: FusedDecodeStep | None = None
        self._fused_auto = fused is None  # chosen here, so given up quietly if it cannot compile
        self._plain_len_buckets = sorted({min(max_len, b) for b in range(length_bucket, max_len + length_bucket,
                                                                          length_bucket)})
        self.len_buckets = self._plain_len_buckets
        if fused if fused is not None else (on_cuda and fused_step.available()):
            from voxgate_server.engines.chatterbox_fast.t3.sampling_kernel import FusedSampler  # imports Triton

            self._fused = FusedDecodeStep(self.model)
            self._sampler = FusedSampler(self.sampling)  # one kernel for sample() on the fused step
            # its attention reads each row's own length on the device: one graph per batch bucket
            self.len_buckets = [max_len]
        if compile and self._fused is None:
            self.model.compile_layers()
        self._graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self._pool: Any = None
        self._stream = torch.cuda.Stream(self.device) if on_cuda else None
        self._slots: list[_Slot | None] = [None] * max_batch
        self.ahead = max(1, ahead if ahead is not None else (2 if on_cuda else 1))
        self._inflight: collections.deque[_Launch] = collections.deque()
        # a ring of host buffers, one per step in flight (pinned: the copy is asynchronous), each
        # with the event that says its copy is done; one more than can be in flight, so a slot is
        # reused only after its step was collected
        self._host_bufs = [torch.zeros(max_batch, dtype=torch.long, pin_memory=on_cuda)
                           for _ in range(self.ahead + 1)]
        self._events = [torch.cuda.Event() if on_cuda else None for _ in range(self.ahead + 1)]
        self._next_host = 0
        self._pending: queue.Queue[_Job] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.step_rows = 0
        # a list to record (perf_counter, "prefill" | "step", rows) per launch into (the GPU bench's
        # burst timeline); None: nothing is recorded
        self.trace: list[tuple[float, str, int]] | None = None

    # -- public API ------------------------------------------------------------------------------

    def start(self) -> "BatchedT3Decoder":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="t3-decoder", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def load(self) -> int:
        """Requests being decoded or waiting to be (read without a lock: a hint)."""
        return sum(s is not None for s in self._slots) + self._pending.qsize()

    def prompt_embeds(self, t3_cond: Any, text_tokens: Tensor, sync: bool = True) -> Tensor:
        """[T, C] prefill embeddings, built by upstream's own ``prepare_input_embeds`` on a
        copy of the conditionals (upstream caches an embedding inside the object it is given).
        ``sync=False``: the caller waits for the GPU before the decoder may read them."""
        t3 = self.t3
        cond = dataclasses.replace(t3_cond)
        if text_tokens.dim() == 1:
            text_tokens = text_tokens[None]
        text_tokens = text_tokens.to(t3.speech_head.weight.device)
        start = torch.full_like(text_tokens[:, :1], START_SPEECH_TOKEN)
        with torch.inference_mode():
            embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text_tokens, speech_tokens=start,
                                                cfg_weight=0.0)
        if sync and embeds.is_cuda:  # made on the caller's stream; the decoder thread reads it on its own
            torch.cuda.current_stream(embeds.device).synchronize()
        return embeds[0]

    def submit(self, t3_cond: Any, text_tokens: Tensor, params: SamplingParams | None = None,
               max_new_tokens: int = 1000, cancel: threading.Event | None = None) -> TokenStream:
        """Queue one request; returns its stream at once. ``max_new_tokens`` counts every
        sampled token (upstream's ``max_gen_len=N`` makes at most N + 1)."""
        embeds = self.prompt_embeds(t3_cond, text_tokens)
        return self.submit_embeds(embeds, params, max_new_tokens, cancel)

    def submit_embeds(self, embeds: Tensor, params: SamplingParams | None = None, max_new_tokens: int = 1000,
                      cancel: threading.Event | None = None) -> TokenStream:
        room = self.max_len - embeds.shape[0]
        if room < 1:
            raise ValueError(f"prompt of {embeds.shape[0]} positions leaves no room in max_len {self.max_len}")
        stream = TokenStream(max(1, min(max_new_tokens, room)), cancel)
        self._pending.put(_Job(embeds.detach(), params or SamplingParams(), stream))
        self._wake.set()
        if self._thread is None:
            raise RuntimeError("decoder not started")
        return stream

    def warmup(self) -> float:
        """Capture every (batch, length) graph now rather than on first use; returns seconds."""
        t0 = time.perf_counter()
        if self.cuda_graphs:
            with self._kv_lock, torch.cuda.stream(self._stream):
                try:
                    self._graph(self.batch_buckets[0], self.len_buckets[0])  # the kernels compile here
                except Exception:
                    if self._fused is None or not self._fused_auto:
                        raise
                    log.warning("the fused T3 step did not compile; decoding with the plain step", exc_info=True)
                    self._fused = None
                    self.len_buckets = self._plain_len_buckets
                    self._graphs.clear()
                for b in self.batch_buckets:
                    for n in self.len_buckets:
                        self._graph(b, n)
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    # -- scheduler -------------------------------------------------------------------------------

    def _run(self) -> None:
        ctx = torch.cuda.stream(self._stream) if self._stream is not None else _nullctx()
        with ctx, torch.inference_mode():
            while not self._stop.is_set():
                try:
                    self._admit()
                    if any(self._slots) and len(self._inflight) < self.ahead:
                        self._launch()
                        if len(self._inflight) < self.ahead:
                            continue  # queue another step before reading this one
                    if self._inflight:
                        self._collect(self._inflight.popleft())
                        continue
                    self._idle()
                    self._wake.wait(0.05)
                    self._wake.clear()
                except Exception as exc:  # fail every active request, keep serving
                    log.exception("t3 decoder step failed")
                    self._inflight.clear()
                    for i, s in enumerate(self._slots):
                        if s is not None:
                            s.job.stream._finish(exc)
                            self._slots[i] = None

    def _idle(self) -> None:
        """Nothing active or in flight: after ``kv_idle_trim_s`` of that, give a growable KV
        cache's memory back (the next request maps what it needs again)."""
        now = time.perf_counter()
        if any(self._slots) or not self._pending.empty():
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
            return
        m = self.model
        if m.kv_grow is None or m.kv_grow.mapped_bytes == 0 or now - self._idle_since < self.kv_idle_trim_s:
            return
        if not self._kv_lock.acquire(blocking=False):
            return
        try:
            if self._stream is not None:
                self._stream.synchronize()
            freed = m.trim_kv()
            log.info("KV cache idle for %.0f s: %d MiB given back", now - self._idle_since, freed // 2**20)
        finally:
            self._kv_lock.release()

    def _admit(self) -> None:
        """Admit waiting requests into free slots: one prefill for all admitted together."""
        batch: list[tuple[int, _Job]] = []
        free = [i for i, s in enumerate(self._slots) if s is None]
        while len(batch) < len(free):
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                break
            if job.stream.cancelled():
                job.stream._finish(DecodeCancelled())
                continue
            batch.append((free[len(batch)], job))
        if not batch:
            return
        try:
            firsts = self._prefill(batch)
        except Exception as exc:
            for _, job in batch:
                job.stream._finish(exc)
            return
        for (slot, job), first in zip(batch, firsts):
            job.stream._push(first)
            if job.stream.max_new_tokens <= 1:
                job.stream._finish()
                continue
            self._slots[slot] = _Slot(job, count=1)

    def _prefill(self, batch: list[tuple[int, _Job]]) -> list[int]:
        """Prompts of ``batch`` into their slots' caches; each one's first token, sampled."""
        m, st = self.model, self.sampling
        if self.trace is not None:
            self.trace.append((time.perf_counter(), "prefill", len(batch)))
        slots = [slot for slot, _ in batch]
        embeds = [job.embeds.to(self.device) for _, job in batch]
        self._idle_since = None
        m.ensure_positions(max(e.shape[0] for e in embeds) + _GROW_AHEAD)
        logits = m.logits(m.prefill(slots, embeds))
        for slot, job in batch:
            st.set_slot(slot, job.params)
        rows = torch.tensor(slots, device=self.device)
        st.history[rows, START_SPEECH_TOKEN] = True  # upstream: the first draw sees the start token
        first = sample(logits, st, rows)
        st.history[rows] = False  # afterwards, the history is the generated tokens only
        st.history[rows, first] = True
        self.tokens_buf[rows] = first
        self.pos_buf[rows] = torch.tensor([e.shape[0] for e in embeds], device=self.device)
        return first.tolist()

    def _launch(self) -> None:
        """Queue one decode step for every active slot; its tokens are read by ``_collect``."""
        active = [(i, s) for i, s in enumerate(self._slots) if s is not None]
        top = active[-1][0] + 1
        B = next(b for b in self.batch_buckets if b >= top)
        # the step writes each slot's key at its position on the device (prompt + steps so far)
        longest = min(self.max_len, max(s.job.embeds.shape[0] + s.launched for _, s in active) + 1)
        L = next(n for n in self.len_buckets if n >= longest)
        # the fused step reads each row up to its position, the plain one the whole length bucket
        need = longest if self._fused is not None else L
        if need > self.model.kv_positions_mapped:
            self.model.ensure_positions(need + _GROW_AHEAD)
        if self.trace is not None:
            self.trace.append((time.perf_counter(), "step", len(active)))
        if self.cuda_graphs:
            self._graph(B, L).replay()
        else:
            self._step_eager(B, L)
        host, event = self._host_bufs[self._next_host], self._events[self._next_host]
        self._next_host = (self._next_host + 1) % len(self._host_bufs)
        host.copy_(self.next_buf, non_blocking=event is not None)
        if event is not None:
            event.record()
        for _, s in active:
            s.launched += 1
        self.steps += 1
        self.step_rows += len(active)
        self._inflight.append(_Launch(active, host, event))

    def _collect(self, launch: _Launch) -> None:
        """Hand out one launched step's tokens; retire requests that stopped, hit their cap or
        were cancelled (a request retired by an earlier step ignores its later ones)."""
        if launch.event is not None:
            launch.event.synchronize()
        toks = launch.host.tolist()
        for i, s in launch.slots:
            if self._slots[i] is not s:
                continue
            stream = s.job.stream
            if stream.cancelled():
                stream._finish(DecodeCancelled())
                self._retire(i)
                continue
            tok = toks[i]
            if tok == STOP_SPEECH_TOKEN:
                stream._finish()
                self._retire(i)
                continue
            stream._push(tok)
            s.count += 1
            if s.count >= stream.max_new_tokens:
                stream._finish()
                self._retire(i)

    def _retire(self, slot: int) -> None:
        """Free the slot; its row keeps being stepped while it sits inside a batch bucket, so
        it restarts at position 0 (the fused attention's loop runs to a row's position)."""
        self._slots[slot] = None
        self.pos_buf[slot] = 0

    @property
    def fused(self) -> bool:
        return self._fused is not None

    def _step_body(self, tokens: Tensor, pos: Tensor, L: int) -> tuple[Tensor, Tensor]:
        m = self.model
        if self._fused is not None:
            nxt = self._sampler(self._fused(tokens, pos))
        else:
            logits = m.logits(m.decode(tokens, pos, L))
            nxt = sample(logits, self.sampling, torch.arange(tokens.shape[0], device=tokens.device))
        return nxt, (pos + 1).clamp(max=self.max_len - 1)

    def _step_eager(self, B: int, L: int) -> None:
        nxt, new_pos = self._step_body(self.tokens_buf[:B], self.pos_buf[:B], L)
        self.next_buf[:B] = nxt
        self.tokens_buf[:B] = nxt
        self.pos_buf[:B] = new_pos

    def _graph(self, B: int, L: int) -> torch.cuda.CUDAGraph:
        g = self._graphs.get((B, L))
        if g is not None:
            return g
        # Warm up on this stream (lazy inits, autotuning), then capture. The step writes only
        # into slots < B, whose state the next admission resets anyway.
        saved = (self.tokens_buf.clone(), self.pos_buf.clone(), self.sampling.step.clone(),
                 self.sampling.history.clone())
        self.model.ensure_positions(L if self._fused is None else 1)
        self._step_eager(B, L)
        torch.cuda.current_stream(self.device).synchronize()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=self._pool, stream=torch.cuda.current_stream(self.device),
                              capture_error_mode="thread_local"):
            self._step_eager(B, L)
        self.tokens_buf.copy_(saved[0])
        self.pos_buf.copy_(saved[1])
        self.sampling.step.copy_(saved[2])
        self.sampling.history.copy_(saved[3])
        self._graphs[(B, L)] = g
        return g


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None
