"""``FastTurbo``: text -> streamed audio on a loaded upstream ``ChatterboxTurboTTS``.

Glue between the pieces: upstream's tokenizer and ``punc_norm``, the continuous-batching T3
decoder, and the streaming vocoder (weights shared with the upstream modules).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch

from voxgate_server.engines.chatterbox_fast.t3.decoder import BatchedT3Decoder, DecodeCancelled, TokenStream
from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingParams
from voxgate_server.engines.chatterbox_fast.s3gen.vocoder import StreamingVocoder

T = TypeVar("T")

# what the start-up burst speaks (92 characters): real weights stop when it is spoken, random ones at the cap
log = logging.getLogger("voxgate.engine.chatterbox.fast")
WARM_BURST_TEXT = "Good evening. This is a short warm-up sentence, spoken by every stream of the batch at once."


class CpuSpeechTokenizer(torch.nn.Module):
    """Upstream's S3 speech tokenizer run on the CPU, answering on ``device`` as before."""

    def __init__(self, inner: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        # upstream's ``S3Gen.device`` is the device of the tokenizer's first parameter: keep
        # answering the GPU there (registered before ``inner``, so it comes first)
        self.device_anchor = torch.nn.Parameter(torch.empty(0, device=device), requires_grad=False)
        self.inner = inner.to("cpu")
        self.answer_device = device

    def forward(self, wavs: Any, accelerator: Any = None, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(wavs, torch.Tensor):
            wavs = wavs.cpu()
        elif isinstance(wavs, list):
            wavs = [w.cpu() if isinstance(w, torch.Tensor) else w for w in wavs]
        tokens, lens = self.inner(wavs, max_len=max_len)
        return tokens.to(self.answer_device), lens.to(self.answer_device)


class CpuEmbedding(torch.nn.Module):
    """An embedding table kept on the CPU, answering on ``device``: a lookup of a few dozen rows
    costs nothing there, and the table (T3's text embedding, 0.19 GiB in float32) leaves the GPU."""

    def __init__(self, inner: torch.nn.Embedding, device: torch.device) -> None:
        super().__init__()
        self.inner = inner.to("cpu")
        self.answer_device = device

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner(ids.cpu()).to(self.answer_device)


class FastTurbo:
    """Streaming, batching Turbo on top of upstream's loaded modules (weights shared)."""

    def __init__(self, model: Any, *, max_batch: int = 16, max_len: int = 1536,
                 dtype: torch.dtype | None = None, cuda_graphs: bool | None = None, watermark: bool = True,
                 first_chunk: int = 12, max_chunk: int = 256, watermark_first_chunk: bool = False,
                 s3gen_batch: int = 16, tf32: bool = True, chunk_lead_s: float | None = 0.35,
                 release_upstream_t3: bool = False, decode_ahead: int | None = None,
                 tokenizer_on_cpu: bool = False, s3gen_max_frames: int | None = None,
                 compile_t3: bool = False, s3gen_bf16: bool = False, fused_t3: bool | None = None,
                 busy_streams: int = 0, busy_first_chunk: int = 48, s3gen_graph_batch: int = 16,
                 s3gen_attention: str = "fp16", gpu_helper_threads: int = 1, kv_grow: bool = True,
                 kv_idle_trim_s: float = 5.0) -> None:
        self.model = model
        # A request's own small GPU work (its prompt, its chunks' watermark) is queued by these
        # threads, not by the server's request threads: every thread that runs a matmul keeps a
        # cuBLAS handle and workspace for good (H200: ~95 MiB a thread, 1.5 GiB for 16 request
        # threads; bench/memory/vram_probe.py). 0 helpers: on the caller's thread. A new voice's
        # conditionals get a thread of their own: their CPU work (the clip's speech tokens)
        # would hold up every stream's watermark.
        self._helper = ThreadPoolExecutor(max_workers=gpu_helper_threads, thread_name_prefix="chatterbox-gpu-helper") \
            if gpu_helper_threads > 0 else None
        self._voice_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatterbox-voice") \
            if gpu_helper_threads > 0 else None
        if tf32 and torch.cuda.is_available():
            # S3Gen's flow is compute-bound in float32 once pieces are batched (measured: 205 ms
            # of kernels for 16 pieces on an H200); TF32 matmuls are what its convolutions
            # already use by default (cudnn.allow_tf32). Process-wide; T3 here runs in bf16 (its
            # float32 Triton kernels ask for IEEE). Once the flow ran as graphs, GPU-bound even for
            # one piece, it paid: H200, RTF 0.029 -> 0.027, first audio 0.083 -> 0.063 s; the mel
            # moved 6e-4 (relative, same noise). The engine turns it on by default.
            torch.backends.cuda.matmul.allow_tf32 = True
        self.decoder = BatchedT3Decoder(model.t3, max_batch=max_batch, max_len=max_len, dtype=dtype,
                                        cuda_graphs=cuda_graphs, ahead=decode_ahead,
                                        compile=compile_t3, fused=fused_t3, kv_grow=kv_grow,
                                        kv_idle_trim_s=kv_idle_trim_s)
        if release_upstream_t3:
            # The decoder holds its own copy of the transformer; upstream's (fp32 on the GPU)
            # is only needed by upstream's own generate(). The embeddings stay (prefill input).
            # Turbo's text head is for training only, and the text embedding is a lookup of
            # the request's few dozen text tokens: neither needs the GPU.
            model.t3.tfmr = None
            model.t3.text_head = None
            device = model.t3.speech_head.weight.device
            if device.type == "cuda":
                model.t3.text_emb = CpuEmbedding(model.t3.text_emb, device)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if tokenizer_on_cpu and model.s3gen.device.type == "cuda":
            # S3Gen's speech tokenizer only reads a new voice's clip (once per voice: conditionals
            # are cached), never the speech being made; its weights need not hold VRAM
            model.s3gen.tokenizer = CpuSpeechTokenizer(model.s3gen.tokenizer, model.s3gen.device)
            torch.cuda.empty_cache()
        self.vocoder = StreamingVocoder(model.s3gen, watermarker=self._watermarker(model) if watermark else None,
                                        first_chunk=first_chunk, max_chunk=max_chunk,
                                        watermark_first_chunk=watermark_first_chunk, s3gen_batch=s3gen_batch,
                                        lead_s=chunk_lead_s, s3gen_max_frames=s3gen_max_frames,
                                        s3gen_bf16=s3gen_bf16,
                                        busy=self._busy(self.decoder, busy_streams),
                                        busy_first_chunk=busy_first_chunk,
                                        s3gen_graph_batch=s3gen_graph_batch,
                                        s3gen_attention=s3gen_attention,
                                        on_helper=self.on_helper)
        self.sample_rate = model.sr

    def on_helper(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the fast path's GPU helper thread; its result (or its exception),
        once the GPU work it queued is done."""
        return self._run_on(self._helper, fn, args)

    def on_voice_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread that prepares new voices; as ``on_helper``."""
        return self._run_on(self._voice_thread, fn, args)

    def _run_on(self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if executor is None:
            return fn(*args)
        cuda = self.decoder.device.type == "cuda"

        def run() -> tuple[T, Any]:
            out = fn(*args)
            if not cuda:
                return out, None
            done = torch.cuda.Event()
            done.record()  # after the kernels ``fn`` queued on the helper's stream
            return out, done

        out, done = executor.submit(run).result()
        if done is not None:
            # the caller waits for its GPU work here, not the helper, which is free for the next
            done.synchronize()
        return out

    @staticmethod
    def _busy(decoder: BatchedT3Decoder, streams: int) -> Any:
        """``busy()`` for the vocoder: at least ``streams`` requests decoding (0: never)."""
        if streams <= 0:
            return None
        return lambda: decoder.load() >= streams

    @staticmethod
    def _watermarker(model: Any) -> Any:
        """Upstream's Perth watermarker, with its network on the GPU when there is one (upstream
        leaves it on the CPU, where 16 streams' chunks would queue for it)."""
        wm = model.watermarker
        net = getattr(wm, "perth_net", None)
        dev = model.s3gen.device
        if net is None or dev.type != "cuda":
            return wm
        import copy

        gpu = copy.copy(wm)
        gpu.perth_net = copy.deepcopy(net).to(dev)
        return gpu

    def start(self) -> "FastTurbo":
        self.decoder.start()
        return self

    def warmup(self, text: str = "Warm up the decoder and the vocoder.", max_new_tokens: int = 60,
               burst: int = 0, burst_tokens: int = 250, s3gen_graphs: bool = True) -> float:
        """Capture the decoder's graphs and run one short request through every stage; then
        (``s3gen_graphs``) capture the vocoder's graphs for every piece shape; then, with ``burst``
        > 1, that many requests of ``burst_tokens`` at once, so the first real burst does not pay
        for what only a full batch meets (its prefill and chunk sizes, the allocator growing to
        its working set, CUDA state in many threads). A server runs the last two after it is
        ready instead (``background_warmup``)."""
        import time

        t0 = time.perf_counter()
        self.decoder.warmup()
        for _ in self.stream(text, max_new_tokens=max_new_tokens):
            pass
        if s3gen_graphs:
            self.vocoder.warm_graphs(self.model.conds.gen)
        if burst > 1:
            self._warm_burst(burst, burst_tokens)
        return time.perf_counter() - t0

    def _warm_burst(self, n: int, max_new_tokens: int, cancel: threading.Event | None = None) -> None:
        """``n`` warm-up requests at once; ``cancel`` ends them at their next step (a request
        that is no warm-up has arrived), which is a normal end, not an error."""
        errors: list[BaseException] = []
        barrier = threading.Barrier(n)

        def one() -> None:
            try:
                barrier.wait(60)
                for _ in self.stream(WARM_BURST_TEXT, max_new_tokens=max_new_tokens, cancel=cancel):
                    if cancel is not None and cancel.is_set():
                        break
            except DecodeCancelled:
                pass
            except threading.BrokenBarrierError:
                if cancel is None or not cancel.is_set():
                    raise
            except BaseException as exc:  # noqa: BLE001 - re-raised below, on the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=one, name=f"warm-burst-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def background_warmup(self, s3gen_graphs: bool, burst: int, burst_tokens: int,
                          idle: Callable[[], bool] | None = None) -> BackgroundWarmup:
        """The rest of the warm-up on a thread of its own, so the server is ready before it ends."""
        return BackgroundWarmup(self, s3gen_graphs, burst, burst_tokens, idle)

    def releasable_buffers(self) -> list[Any]:
        """Device memory whose content need not survive a park (``RemappableBuffer``s): the
        decoder's KV cache, rewritten by every request before it is read."""
        buf = self.decoder.model.kv_buffer
        return [buf] if buf is not None else []

    def s3gen_stats(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.vocoder.stats.items()}

    def close(self) -> None:
        self.decoder.close()
        self.vocoder.close()
        for executor in (self._helper, self._voice_thread):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def text_tokens(self, text: str) -> torch.Tensor:
        from chatterbox.tts_turbo import punc_norm

        ids = self.model.tokenizer(punc_norm(text), return_tensors="pt", truncation=True).input_ids
        return ids

    def tokens(self, text: str, conds: Any = None, params: SamplingParams | None = None,
               max_new_tokens: int = 1000, cancel: threading.Event | None = None) -> TokenStream:
        conds = conds if conds is not None else self.model.conds
        embeds = self.on_helper(self.decoder.prompt_embeds, conds.t3, self.text_tokens(text), False)
        return self.decoder.submit_embeds(embeds, params, max_new_tokens, cancel)

    def stream(self, text: str, conds: Any = None, params: SamplingParams | None = None,
               max_new_tokens: int = 1000, cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        conds = conds if conds is not None else self.model.conds
        ts = self.tokens(text, conds, params, max_new_tokens, cancel)
        try:
            yield from self.vocoder.stream(ts, conds.gen)
        finally:
            ts.cancel()


class BackgroundWarmup:
    """The warm-up a server runs after it is ready: S3Gen's graphs for every piece shape (the
    S3Gen worker captures them between real requests' calls; a real piece whose shape is not
    captured yet runs eagerly meanwhile), then the warm-up burst. ``stop`` cancels the burst's
    streams at their next decode step (the first real request does, so it never waits behind
    sixteen warm-up requests); the captures go on. ``abort`` (park, close) also gives up a burst
    not begun. ``wait`` joins it.

    With ``idle`` (the engine's "no request in flight"), a burst that requests came before waits
    for the first idle moment (up to ``idle_wait_s``) instead of being dropped: the first full
    batch pays for what it first touches at batch size (allocations, the eager parts' kernels),
    119 audio s/s against 205-213 after it (bench/results/park-2026-12-03c). Without ``idle``
    a request that came first drops it."""

    def __init__(self, turbo: FastTurbo, s3gen_graphs: bool, burst: int, burst_tokens: int,
                 idle: Callable[[], bool] | None = None, idle_wait_s: float = 120.0) -> None:
        import time

        self.cancel = threading.Event()
        self.aborted = threading.Event()
        self.started = time.perf_counter()
        self.graphs_s: float | None = None
        self.burst_s: float | None = None
        self.error: BaseException | None = None
        self.stopped_early = False
        self._idle = idle
        self._idle_wait_s = idle_wait_s
        self._thread = threading.Thread(target=self._run, args=(turbo, s3gen_graphs, burst, burst_tokens),
                                        name="background-warmup", daemon=True)
        self._thread.start()

    def _run(self, turbo: FastTurbo, s3gen_graphs: bool, burst: int, burst_tokens: int) -> None:
        import time

        try:
            if s3gen_graphs:
                turbo.vocoder.warm_graphs(turbo.model.conds.gen)
                self.graphs_s = time.perf_counter() - self.started
                log.info("S3Gen graphs captured in the background in %.1f s", self.graphs_s)
            if burst > 1 and self._begin_burst():
                t0 = time.perf_counter()
                turbo._warm_burst(burst, burst_tokens, self.cancel)
                self.burst_s = time.perf_counter() - t0
                self.stopped_early = self.cancel.is_set()
                log.info("warm-up burst of %d %s after %.1f s", burst,
                         "stopped by a request" if self.stopped_early else "done", self.burst_s)
            elif burst > 1:
                self.stopped_early = True
                log.info("warm-up burst of %d stopped by a request before it began", burst)
        except BaseException as exc:  # noqa: BLE001 - the server serves on; requests capture what they need
            self.error = exc
            log.warning("background warm-up failed: %r", exc)

    def _begin_burst(self) -> bool:
        """Whether to run the burst now: not stopped (no ``idle``), or idle before ``idle_wait_s``."""
        import time

        if self._idle is None:
            return not self.cancel.is_set()
        deadline = time.perf_counter() + self._idle_wait_s
        while not self.aborted.is_set() and time.perf_counter() < deadline:
            # cleared before the check: a request that starts after it sets it again and ends the burst
            self.cancel.clear()
            if self._idle():
                return True
            self.aborted.wait(0.25)
        return False

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def as_dict(self) -> dict[str, Any]:
        """What ``/health`` shows: running, done or failed; the seconds each part took."""
        state = "running" if self.running else "failed" if self.error is not None else "done"
        out: dict[str, Any] = {"state": state, "graphs_s": _rounded(self.graphs_s),
                               "burst_s": _rounded(self.burst_s), "burst_stopped_early": self.stopped_early}
        if self.error is not None:
            out["error"] = f"{type(self.error).__name__}: {self.error}"
        return out

    def stop(self) -> None:
        self.cancel.set()

    def abort(self) -> None:
        self.aborted.set()
        self.cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
