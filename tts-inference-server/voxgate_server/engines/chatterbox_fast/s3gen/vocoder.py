"""``StreamingVocoder``: speech tokens -> audio in chunks while T3 is still generating.

Upstream runs S3Gen once on the finished token list. Here S3Gen's two stages run per chunk:
- flow (tokens -> mel) on ``context`` already-voiced tokens + the new ones, ``finalize=False``
  until the end (S3Gen then withholds the mel of its 3 look-ahead tokens, as designed for
  streaming), keeping only the new tokens' frames;
- HiFT (mel -> wave) on the new frames plus ``vocoder_context`` frames before them, with the
  excitation signal of the overlap carried over (``cache_source``, HiFT's own mechanism against
  phase jumps), and a short raised-cosine crossfade over the last ``crossfade`` samples.
Which tokens go into which chunk: the first chunk is ``first_chunk`` tokens, so the first audio
leaves after a dozen or so tokens, and chunks grow x``growth`` (up to ``max_chunk``) until
``buffer_s`` seconds of audio are out. From then on (``lead_s`` set, the default) chunks are paced
by playback: the next one waits until the audio handed out would run dry within ``lead_s``
seconds, or ``max_chunk`` tokens are waiting, and then voices every token there is. T3 runs
10-25x faster than real time, so a sentence usually needs three S3Gen calls (12, 36, the rest)
instead of one per growth step; each call re-runs the voice's 250-token prompt through the flow,
so fewer calls is most of the S3Gen cost. With ``lead_s=None`` the growth schedule runs to the
end. The clip ends with upstream's three silence tokens; the first 40 ms get
upstream's fade-in.

Watermarking (Perth) runs on each chunk as soon as it is voiced, before it is handed out; the
first chunk is not held back for it unless ``watermark_first_chunk`` is set. (It used to run on a
pool and a chunk was released only once the next one was voiced; with paced chunks the next one
can come seconds later, so a finished chunk waited for it.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker
from voxgate_server.engines.chatterbox_turbo.waveform import (apply_watermark, staged_watermark, watermark_input,
                                                              watermark_network, watermark_output)

SPEECH_VOCAB = 6561
S3GEN_SIL = 4299
LOOKAHEAD = 3  # S3Gen flow's pre_lookahead_len (tokens)
MEL_PER_TOKEN = 2
SAMPLES_PER_MEL = 480  # 24 kHz / 50 Hz
SAMPLES_PER_TOKEN = MEL_PER_TOKEN * SAMPLES_PER_MEL


def chunk_schedule(first: int, growth: float, largest: int) -> Iterator[int]:
    size = float(first)
    while True:
        yield max(1, int(size))
        size = min(float(largest), size * growth)


class StreamingVocoder:
    def __init__(self, s3gen: torch.nn.Module, *, watermarker: Any | None = None, first_chunk: int = 12,
                 growth: float = 3.0, max_chunk: int = 256, context: int = 24, vocoder_context: int = 12,
                 crossfade: int = 960, watermark_first_chunk: bool = False,
                 n_cfm_timesteps: int = 2, s3gen_batch: int = 16,
                 s3gen_threads: int = 1, lead_s: float | None = 0.35, buffer_s: float = 1.5,
                 s3gen_max_frames: int | None = None, s3gen_bf16: bool = False,
                 busy: Callable[[], bool] | None = None, busy_first_chunk: int | None = None,
                 s3gen_graph_batch: int = 16, s3gen_attention: str = "fp16",
                 on_helper: Callable[..., Any] | None = None) -> None:
        self.s3gen = s3gen
        # runs the watermark on the engine's GPU helper thread (``FastTurbo.on_helper``), not on
        # the request's thread; None: on the caller's
        self.on_helper = on_helper
        # under load (``busy()`` when a request's first chunk is due) the first chunk waits for
        # ``busy_first_chunk`` tokens: S3Gen, which re-runs the voice prompt for every piece, is
        # what limits many streams, and one call fewer a clip is a third less of that work
        self.busy = busy
        self.busy_first_chunk = busy_first_chunk
        self.lead_s = lead_s
        self.buffer_s = buffer_s
        self.watermarker = watermarker
        self.first_chunk = first_chunk
        self.growth = growth
        self.max_chunk = max_chunk
        self.context = context
        self.vocoder_context = vocoder_context
        self.crossfade = crossfade
        self.watermark_first_chunk = watermark_first_chunk
        self.n_cfm_timesteps = n_cfm_timesteps
        self.sample_rate = 24000
        self.worker = S3GenWorker(s3gen, n_cfm_timesteps=n_cfm_timesteps, max_batch=s3gen_batch,
                                  threads=s3gen_threads, max_frames=s3gen_max_frames,
                                  flow_bf16=s3gen_bf16, graph_batch=s3gen_graph_batch,
                                  attention=s3gen_attention)
        t = torch.linspace(0, np.pi, crossfade)
        self._fade_in = ((1 - torch.cos(t)) / 2).numpy().astype(np.float32)
        self._fade_out = 1.0 - self._fade_in
        n_trim = self.sample_rate // 50
        trim = np.zeros(2 * n_trim, dtype=np.float32)
        trim[n_trim:] = (np.cos(np.linspace(np.pi, 0, n_trim)) + 1) / 2
        self._trim_fade = trim

    def warm_graphs(self, ref: dict) -> None:
        """Capture S3Gen's one-piece graphs for every piece width a stream of this voice makes."""
        longest = self.context + self.max_chunk + 2 * LOOKAHEAD  # tokens into the flow
        widest = MEL_PER_TOKEN * (self.max_chunk + 2 * LOOKAHEAD) + self.vocoder_context + \
            self.crossfade // SAMPLES_PER_MEL + 1  # mel frames into HiFT
        self.worker.warm_graphs(ref, longest, widest)

    @property
    def stats(self) -> dict[str, float]:
        return self.worker.stats

    def close(self) -> None:
        self.worker.close()

    # -- S3Gen stages: queued to the shared worker, which batches them across requests ------------

    def _flow(self, tokens: list[int], ref: dict, finalize: bool) -> torch.Tensor:
        """Mel [80, frames] of ``tokens``, without the look-ahead tokens' frames unless final.

        In chatterbox-tts 0.1.7 the flow's own ``finalize=False`` fails (it trims the encoder
        output but not its mask, and sizes meanflow's noise for every token), so the flow runs
        finalized and the look-ahead frames are dropped here; the next chunk redoes them with
        their right context."""
        mel = self.worker.flow(tokens, ref).result()
        if not finalize:
            mel = mel[:, : mel.shape[1] - LOOKAHEAD * MEL_PER_TOKEN]
        return mel

    def _hift(self, mel: torch.Tensor, cache_source: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        if mel.is_cuda:  # made on this thread's stream; the worker reads it on its own
            torch.cuda.current_stream(mel.device).synchronize()
        return self.worker.hift(mel, cache_source).result()

    def _watermark(self, samples: np.ndarray) -> np.ndarray:
        wm = self.watermarker
        assert wm is not None
        if self.on_helper is None:
            return apply_watermark(wm, samples, self.sample_rate)
        if not staged_watermark(wm):
            return self.on_helper(apply_watermark, wm, samples, self.sample_rate)
        # Only the network's kernels are queued on the helper thread; the resampling and the wait
        # for the GPU stay on this one, so one helper serves every stream's chunks (with the whole
        # call on it, 16 concurrent streams lost 6-8% of their audio s/s on an H200).
        signal = watermark_input(wm, samples, self.sample_rate)
        return watermark_output(wm, self.on_helper(watermark_network, wm, signal), self.sample_rate)

    # -- streaming ---------------------------------------------------------------------------------

    def stream(self, token_batches: Iterable[list[int]], ref_dict: dict) -> Iterator[np.ndarray]:
        """Yield float32 24 kHz chunks for the tokens ``token_batches`` delivers (lists of ints,
        any sizes; start/stop tokens are dropped as upstream does)."""
        first = True
        for chunk in self._chunks(token_batches, ref_dict):
            if self.watermarker is not None and (not first or self.watermark_first_chunk):
                chunk = self._watermark(chunk)
            first = False
            yield chunk

    def _chunks(self, token_batches: Iterable[list[int]], ref: dict) -> Iterator[np.ndarray]:
        tokens: list[int] = []
        voiced = 0  # tokens whose mel has been produced
        mel_hist: torch.Tensor | None = None  # all mel frames so far [80, 2*voiced]
        src_hist: torch.Tensor | None = None  # excitation of the last HiFT call
        src_start = 0  # absolute sample where src_hist starts
        emitted = 0  # absolute samples handed out
        tail: np.ndarray | None = None  # held-back samples [emitted, emitted + crossfade)
        sizes = chunk_schedule(self.first_chunk, self.growth, self.max_chunk)
        need = next(sizes)
        started: float | None = None  # when the first audio was handed out (playback starts)

        def due() -> bool:
            """Whether to voice the waiting tokens now (not counting the look-ahead ones)."""
            waiting = len(tokens) - voiced - LOOKAHEAD
            if started is None and self.busy_first_chunk and self.busy is not None and self.busy():
                return waiting >= max(need, self.busy_first_chunk)
            if self.lead_s is None or started is None or emitted < self.buffer_s * self.sample_rate:
                return waiting >= need  # growth schedule: first chunk, then build a buffer
            if waiting < self.first_chunk:
                return False
            if waiting >= self.max_chunk:
                return True
            ahead = emitted / self.sample_rate - (time.perf_counter() - started)
            return ahead <= self.lead_s

        def run(final: bool) -> np.ndarray | None:
            nonlocal voiced, mel_hist, src_hist, src_start, emitted, tail
            ctx0 = max(0, voiced - self.context)
            mel = self._flow(tokens[ctx0:], ref, finalize=final)
            new = mel[:, (voiced - ctx0) * MEL_PER_TOKEN:]
            if new.shape[1] == 0:
                return None
            mel_hist = new if mel_hist is None else torch.cat([mel_hist, new], dim=1)
            voiced = mel_hist.shape[1] // MEL_PER_TOKEN
            end_frame = mel_hist.shape[1]
            # vocode from a few frames before the first sample not yet final
            start_frame = max(0, emitted // SAMPLES_PER_MEL - self.vocoder_context)
            cache = None
            if src_hist is not None:
                a = start_frame * SAMPLES_PER_MEL - src_start
                cache = src_hist[a:] if a >= 0 else None
            audio, src = self._hift(mel_hist[:, start_frame:end_frame], cache)
            src_hist, src_start = src, start_frame * SAMPLES_PER_MEL
            base = start_frame * SAMPLES_PER_MEL
            if base == 0:
                audio[: len(self._trim_fade)] *= self._trim_fade[: len(audio)]
            seg = audio[emitted - base:]  # starts at sample `emitted`
            if tail is not None:
                n = min(len(tail), len(seg))
                seg = seg.copy()
                seg[:n] = tail[:n] * self._fade_out[:n] + seg[:n] * self._fade_in[:n]
            if final:
                tail = None
                out = seg
            else:
                keep = min(self.crossfade, len(seg))
                tail = seg[len(seg) - keep:].copy()
                out = seg[: len(seg) - keep]
            emitted += len(out)
            return out

        for batch in token_batches:
            tokens.extend(t for t in batch if t < SPEECH_VOCAB)
            while due():
                out = run(final=False)
                need = next(sizes)
                if out is not None and out.size:
                    if started is None:
                        started = time.perf_counter()
                    yield out
        tokens.extend([S3GEN_SIL] * 3)
        out = run(final=True)
        if out is not None and out.size:
            yield out
        elif tail is not None and tail.size:
            yield tail
