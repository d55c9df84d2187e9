"""The chatterbox-turbo engine on the fast path: batched decoding and streaming below the sentence.

Same engine as ``chatterbox_turbo`` (voices, options, limits, catalogue) with the per-chunk
generate-then-vocode loop replaced by ``FastTurbo``: requests share one continuously batched
T3 decode loop (so the server may run ``max_batch`` of them at once) and audio leaves in pieces
of a few dozen speech tokens while the rest is still being generated.

Settings (``VOXGATE_CHATTERBOX_*``): ``FAST`` (auto: on with CUDA, off on CPU; on; off),
``MAX_BATCH`` (16), ``MAX_LEN`` (1024 in the default profile: prompt + generated tokens a request may use;
text chunks are cut short enough to fit, ``chunk_chars_within``),
``S3GEN_BATCH`` (16 vocoder pieces at once), ``S3GEN_TF32`` (true: TF32 matmuls, process-wide),
``S3GEN_ATTENTION`` (fp16: the flow estimator's attention on tensor cores), ``FIRST_CHUNK_TOKENS``
(12), ``MAX_CHUNK_TOKENS`` (256), ``WATERMARK_FIRST_CHUNK`` (false); the rest in
docs/gpu-performance.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from voxgate_server.engines.base import AudioChunk, Cancelled, EngineError, SynthesisRequest
from voxgate_server.engines.chatterbox_turbo.engine import SAMPLE_RATE, ChatterboxTurboEngine
from voxgate_server.engines.chatterbox_turbo.tokens import TOKENS_PER_SECOND
from voxgate_server.settings import Settings

log = logging.getLogger("voxgate.engine.chatterbox.fast")


# VOXGATE_CHATTERBOX_PROFILE: batch, KV length, S3Gen batch and graph shapes sized together; a
# setting given on its own (e.g. VOXGATE_CHATTERBOX_MAX_LEN) wins over its profile's value.
# Measured per profile in docs/gpu-performance.md ("Profiles").
# balanced (the default): 1024 KV positions, held only as far as requests reach (KV_GROW), and
# S3Gen calls of at most 4000 mel frames: 3588 MiB at ready, 5130 MiB peak with 16 at once,
# 205.8 audio s/s (median of three bursts, with BUSY_STREAMS 8; H200,
# bench/results/profiles-2026-12-03f); before, 1024 held positions and 3000 frames: 4354 / 5290
# MiB, 166.5 audio s/s in one burst (profiles-2026-12-03c).
# throughput keeps the longer KV and wider S3Gen calls, with batches of 32.
PROFILES: dict[str, dict[str, int]] = {
    "small": {"max_batch": 1, "max_len": 768, "s3gen_batch": 1, "s3gen_graph_batch": 1, "warmup_burst_tokens": 0,
              "cublas_workspace_kib": 4096},
    "balanced": {"max_len": 1024, "s3gen_max_frames": 4000},
    "throughput": {"max_batch": 32, "s3gen_batch": 32},
}

PROMPT_POSITIONS = 375  # Turbo's voice prompt (speech_cond_prompt_len) ahead of the text in T3


def chunk_chars_within(max_len: int) -> int:
    """The longest text chunk whose speech fits ``max_len`` positions, so the KV cache never cuts
    a sentence short: after the 375-position voice prompt, a character costs about 1/3 of a text
    token plus 2.27 speech tokens at a slow 11 characters a second (25 tokens a second):
    2.61 positions. 1536 -> 445, 1024 -> 249, 768 -> 150 characters."""
    return max(50, int((max_len - PROMPT_POSITIONS) / (1 / 3 + 25 / 11)))


class FastSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXGATE_CHATTERBOX_", extra="ignore")

    profile: Literal["small", "balanced", "throughput"] = "balanced"
    fast: Literal["auto", "on", "off"] = "auto"
    max_batch: int = Field(16, ge=1, le=256)
    max_len: int = Field(1536, ge=512, le=8192)
    first_chunk_tokens: int = Field(12, ge=4, le=400)
    max_chunk_tokens: int = Field(256, ge=8, le=1000)
    # once 1.5 s of audio is out, the next chunk is voiced when the buffered audio falls to this
    # many seconds (docs/gpu-performance.md); < 0: the fixed x3 schedule to the end
    chunk_lead_s: float = Field(0.35, le=10.0)
    s3gen_batch: int = Field(16, ge=1, le=64)
    # TF32 matmuls (process-wide) for S3Gen's float32 flow, as its convolutions already run by
    # PyTorch's default: H200, 16 batched pieces 302 -> 213 ms, the mel 6e-4 (relative) from float32
    s3gen_tf32: bool = True
    watermark_first_chunk: bool = False
    # decode steps queued ahead of reading their tokens (docs/gpu-performance.md)
    decode_ahead: int = Field(2, ge=1, le=8)
    speech_tokenizer_on_cpu: bool = True
    # most mel frames (pieces x widest piece, voice prompt included) in one S3Gen call; 0: no cap
    s3gen_max_frames: int = Field(6000, ge=0)
    # with at least this many requests decoding, a new request's first chunk waits for
    # BUSY_FIRST_CHUNK_TOKENS instead of FIRST_CHUNK_TOKENS (one S3Gen call fewer a clip, the
    # voice prompt re-run once less); 0: never. On two H200s with the balanced sizes, 16 at once:
    # medians of three bursts 207.6 / 205.8 audio s/s against 200.8 / 200.3 without, the first
    # burst after start 197.7 / 203.7 against 179.0 / 171.9, for a first byte at 16 of 0.33-0.37 s
    # against 0.27-0.31 s (bench/results/profiles-2026-12-03e, -f; docs/gpu-performance.md)
    busy_streams: int = Field(8, ge=0, le=256)
    busy_first_chunk_tokens: int = Field(48, ge=4, le=400)
    # the T3 decode step as Triton kernels, 5 a layer (auto: with CUDA when Triton is installed)
    fused_step: Literal["auto", "on", "off"] = "auto"
    # the T3 decode layer through torch.compile (needs Triton and a C compiler; ~20 s at start;
    # ignored when the fused step is used)
    compile: bool = False
    # S3Gen's flow under bf16 autocast (off: unmeasured on real weights; docs/gpu-performance.md)
    s3gen_bf16: bool = False
    # S3Gen flow and HiFT calls of at most this many pieces replay CUDA graphs, one per padded
    # shape, every shape within the frame budget captured at start-up; 0: always eager (H200, 16
    # concurrent: 81-121 audio s/s with 2, 183-216 with 16; docs/gpu-performance.md)
    s3gen_graph_batch: int = Field(16, ge=0, le=16)
    # the flow estimator's attention: Q, K, V in float16 (the default; its rounding is TF32's),
    # bfloat16, or float32 as upstream runs it (docs/gpu-performance.md)
    s3gen_attention: Literal["fp16", "bf16", "fp32"] = "fp16"
    # at start-up on CUDA, after the graphs: MAX_BATCH requests of this many tokens at once, so
    # the first real burst runs as fast as later ones (docs/gpu-performance.md); 0: no burst
    # It runs after the engine is ready, and the first request stops it, so no request waits for it.
    warmup_burst_tokens: int = Field(250, ge=0, le=1000)
    # S3Gen's graphs (every piece shape; H200: 12.7 s) captured after the server is ready, between
    # requests' calls ("background", the default), or before it reports ready ("startup")
    s3gen_capture: Literal["background", "startup"] = "background"
    # threads that queue requests' small GPU work: prompts, watermarks (each thread that runs a
    # matmul keeps a cuBLAS handle and workspace, ~95 MiB on an H200; a new voice's conditionals
    # get one more thread); 0: each request's own thread
    gpu_helper_threads: int = Field(1, ge=0, le=16)
    # on CUDA the KV cache holds memory only for the positions requests reach, and gives it back
    # after KV_IDLE_TRIM_S with nothing to decode (engines/gpu/growable.py); false: all of
    # MAX_LEN for every slot, from start-up on
    kv_grow: bool = True
    kv_idle_trim_s: float = Field(5.0, ge=0.0)
    # cuBLAS and cuBLASLt workspace per thread and stream, in KiB (CUBLAS_WORKSPACE_CONFIG,
    # CUBLASLT_WORKSPACE_SIZE; an environment value set by hand wins); 0: PyTorch's defaults. The
    # small profile sets 4096: at ready 2886 -> 2562 MiB with one stream at RTF 0.028 (H200,
    # bench/results/profiles-2026-12-03b); with the growing KV cache 2418 MiB (profiles-2026-12-03d)
    cublas_workspace_kib: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _apply_profile(self) -> FastSettings:
        for name, value in PROFILES[self.profile].items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
        return self

    def turbo_kwargs(self) -> dict[str, Any]:
        """``FastTurbo``'s keyword arguments for these settings (the watermark is the engine's),
        in one place so the server and the GPU bench run the same configuration."""
        return dict(max_batch=self.max_batch, max_len=self.max_len, first_chunk=self.first_chunk_tokens,
                    max_chunk=self.max_chunk_tokens, watermark_first_chunk=self.watermark_first_chunk,
                    s3gen_batch=self.s3gen_batch, tf32=self.s3gen_tf32,
                    chunk_lead_s=self.chunk_lead_s if self.chunk_lead_s >= 0 else None,
                    release_upstream_t3=True, decode_ahead=self.decode_ahead,
                    tokenizer_on_cpu=self.speech_tokenizer_on_cpu,
                    s3gen_max_frames=self.s3gen_max_frames or None, compile_t3=self.compile,
                    s3gen_bf16=self.s3gen_bf16,
                    fused_t3={"auto": None, "on": True, "off": False}[self.fused_step],
                    busy_streams=self.busy_streams, busy_first_chunk=self.busy_first_chunk_tokens,
                    s3gen_graph_batch=self.s3gen_graph_batch, s3gen_attention=self.s3gen_attention,
                    gpu_helper_threads=self.gpu_helper_threads, kv_grow=self.kv_grow,
                    kv_idle_trim_s=self.kv_idle_trim_s)

    def apply_process_settings(self) -> None:
        """Settings that live in the process environment and must be in place before the first
        cuBLAS call of the process (the model's load)."""
        if self.cublas_workspace_kib:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", f":{self.cublas_workspace_kib}:1")
            os.environ.setdefault("CUBLASLT_WORKSPACE_SIZE", str(self.cublas_workspace_kib))


class FastChatterboxTurboEngine(ChatterboxTurboEngine):
    """``chatterbox-turbo`` with ``FastTurbo`` underneath when it is enabled."""

    def __init__(self, settings: Settings, engine_settings: Any = None, fast: FastSettings | None = None) -> None:
        super().__init__(settings, engine_settings)
        self.fast_settings = fast or FastSettings()
        self.fast: Any = None
        self.background_warmup: Any = None  # pipeline.BackgroundWarmup, started at the end of load()
        self._in_flight = 0  # requests in synthesize(): the warm-up burst waits for none
        self._in_flight_lock = threading.Lock()

    def _fast_wanted(self) -> bool:
        mode = self.fast_settings.fast
        return not (mode == "off" or (mode == "auto" and self.device != "cuda"))

    def _warm_up(self) -> None:
        """On CUDA with the fast path the upstream path's one-token warm-up is skipped: the fast
        path's own warm-up runs every stage requests use (H200: the skipped warm-up took 15.7 s
        of a 81 s cold start, bench/results/park-2026-12-02); the default voice's conditioning
        is primed after it instead."""
        if self.device == "cuda" and self._fast_wanted():
            return
        super()._warm_up()

    def load(self) -> None:
        if self.fast_settings.fast != "off":  # the device is chosen inside the load, too late for these
            self.fast_settings.apply_process_settings()
        super().load()
        if not self._fast_wanted():
            return
        from voxgate_server.engines.chatterbox_fast.pipeline import FastTurbo

        fs = self.fast_settings
        try:
            self.fast = FastTurbo(self.model, watermark=self.settings.watermark, **fs.turbo_kwargs()).start()
            cuda = self.device == "cuda"
            background = fs.s3gen_capture == "background"
            seconds = self.fast.warmup(max_new_tokens=24 if cuda else 4, s3gen_graphs=not background)
            if cuda and self.settings.warmup:
                self.conditionals_for(self.settings.default_voice)  # what the skipped warm-up primed
        except Exception as exc:  # noqa: BLE001 - reported as a failed load
            raise EngineError(f"chatterbox fast path failed to start: {exc}") from exc
        log.info("chatterbox fast path on %s: batch %d, %d positions, warm-up %.1f s", self.device,
                 fs.max_batch, fs.max_len, seconds)
        burst = fs.max_batch if fs.warmup_burst_tokens and cuda else 0  # on CPU it would cost minutes
        if background or burst > 1:
            # after ready, not before: requests are served meanwhile, and the first one stops the burst
            self.background_warmup = self.fast.background_warmup(background, burst, fs.warmup_burst_tokens,
                                                                 idle=lambda: self._in_flight == 0)

    def end_warm_burst(self, wait: bool = False) -> None:
        """Stop the warm-up burst if it still runs (a request came); ``wait``: and let the
        background warm-up finish its graph captures (the engine parks or closes)."""
        warmup = self.background_warmup
        if warmup is not None and warmup.running:
            if wait:
                warmup.abort()
                warmup.wait(120)
            else:
                warmup.stop()

    def warmup_status(self) -> dict[str, Any] | None:
        warmup = self.background_warmup
        return warmup.as_dict() if warmup is not None else None

    def park(self) -> None:
        self.end_warm_burst(wait=True)  # its streams would run on memory being checkpointed
        super().park()

    def close(self) -> None:
        self.end_warm_burst(wait=True)
        if self.fast is not None:
            self.fast.close()
            self.fast = None
        super().close()

    def max_concurrency(self) -> int | None:
        return self.fast_settings.max_batch if self.fast is not None else super().max_concurrency()

    def capabilities(self) -> Any:
        caps = super().capabilities()
        if self.fast is None:
            return caps
        return dataclasses.replace(caps, max_chunk_chars=min(caps.max_chunk_chars,
                                                             chunk_chars_within(self.fast_settings.max_len)))

    def releasable_buffers(self) -> list[Any]:
        return self.fast.releasable_buffers() if self.fast is not None else []

    def compute_conditionals(self, path: Path) -> Any:
        """On the fast path's voice thread, off the request's thread like the rest of its GPU
        work (the voice encoders' matmuls would give that thread a cuBLAS handle of its own)."""
        if self.fast is None:
            return super().compute_conditionals(path)
        return self.fast.on_voice_thread(super().compute_conditionals, path)

    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        with self._in_flight_lock:
            self._in_flight += 1  # before the stop below: the warm-up checks it after clearing its stop
        try:
            self.end_warm_burst()
            yield from self._synthesize(request)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        if self.fast is None:
            yield from super().synthesize(request)
            return
        self.check_released_memory()
        from voxgate_server.engines.chatterbox_fast.t3.decoder import DecodeCancelled
        from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingParams

        options = request.options
        conds = self.conditionals_for(request.voice or self.settings.default_voice)
        seed = options.get("seed")
        base_seed = int(seed) if seed is not None else secrets.randbits(63)
        sampling = self.sampling_options(options)
        # word timings need a sentence's whole clip: its pieces are held and leave as one chunk
        timed = options.get("timestamps") == "word"
        for index, text, budget in self.budgeted_chunks(request):
            params = SamplingParams(**sampling, seed=(base_seed + index) % (2**63))
            samples_out = 0
            held: list[np.ndarray] = []
            try:
                for piece in self.fast.stream(text, conds, params, budget.next_cap, request.cancel):
                    samples_out += piece.size
                    if timed:
                        held.append(piece)
                    else:
                        yield AudioChunk(samples=piece, sample_rate=SAMPLE_RATE, segment_end=False)
            except DecodeCancelled:
                raise Cancelled() from None
            budget.spend(samples_out // (SAMPLE_RATE // TOKENS_PER_SECOND))
            if timed:
                clip = np.concatenate(held) if held else np.zeros(0, dtype=np.float32)
                yield self.sentence_chunk(request, text, clip)
            else:
                yield AudioChunk(samples=np.zeros(0, dtype=np.float32), sample_rate=SAMPLE_RATE, segment_end=True)
