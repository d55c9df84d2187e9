"""S3Gen's HiFT vocoder (mel -> wave) as fixed-shape calls that CUDA graphs replay.

A HiFT call is ~1200 small kernels: host-bound when eager (several times its GPU time), and the
last chunk's call is part of every clip's tail. Upstream's ``HiFTGenerator.inference`` cannot be
captured (its sine source builds tensors on the CPU and copies them over, and ``torch.istft``
checks its window on the host), and rows padded to a shared width would change the last
samples: its convolutions are not causal, so they would read the padding where an unpadded
call reads zeros, and the STFT/ISTFT edges would see it too. ``hift_wave`` restates the call for
padded rows so that every row's samples are those of the row alone:

- the input of every convolution (and transposed convolution) is zero past the row's frames;
- the excitation's STFT reads, past the row's end, the reflection ``torch.stft`` pads with;
- the inverse STFT is an overlap-add normalised by the window envelope of the row's own frames.

Same modules, same weights, same order of operations otherwise;
``tests/chatterbox/test_s3gen_graphs.py`` checks padded rows against ``HiFTGenerator.inference``
with the same random draws.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from voxgate_server.engines.chatterbox_fast.s3gen.graph_cache import GraphCache, padded_shape

log = logging.getLogger("voxgate.engine.chatterbox.graphs")

N_MELS = 80


SnakeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, alpha, lens) -> masked


def _masked_resblock(block: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, lens: torch.Tensor,
                     snake: SnakeFn | None = None) -> torch.Tensor:
    """``ResBlock.forward`` with each convolution's input zero past the row's end (Snake(0) = 0):
    ``mask`` [B, 1, T] is ``lens`` [B] as a float mask; ``snake``, when given, computes the
    activation and the mask in one (``snake_kernel.snake_masked``)."""
    for c1, c2, a1, a2 in zip(block.convs1, block.convs2, block.activations1, block.activations2):
        if snake is None:
            xt = c1(a1(x) * mask)
            xt = c2(a2(xt) * mask)
        else:
            xt = c1(snake(x, a1.alpha, lens))
            xt = c2(snake(xt, a2.alpha, lens))
        x = xt + x
    return x


def _frame_mask(frames: torch.Tensor, width: int) -> torch.Tensor:
    return (torch.arange(width, device=frames.device)[None, None, :] < frames[:, None, None]).float()


def hift_wave(hift: torch.nn.Module, mel: torch.Tensor, frames: torch.Tensor, phase: torch.Tensor,
              noise: torch.Tensor, cache: torch.Tensor, cache_len: torch.Tensor,
              snake: SnakeFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(wave [B, 480 F], excitation [B, 480 F]) of padded rows: ``mel`` [B, 80, F] (row ``i`` valid
    for ``frames[i]`` frames), ``phase`` [B, H+1, 1] and ``noise`` [B, H+1, 480 F] the sine
    source's draws (uniform phases, the fundamental's 0; standard normal), ``cache`` [B, C] the
    excitation to carry over into each row's first ``cache_len[i]`` samples (HiFT's
    ``cache_source``). Samples past a row's ``480 * frames[i]`` are not meaningful."""
    B, _, width = mel.shape
    mask = _frame_mask(frames, width)
    mel = mel * mask

    # f0 from the mel (ConvRNNF0Predictor: convolutions and ELUs, ELU(0) = 0)
    x = mel
    for layer in hift.f0_predictor.condnet:
        x = layer(x * mask) if isinstance(layer, torch.nn.Conv1d) else layer(x)
    f0 = torch.abs(hift.f0_predictor.classifier(x.transpose(1, 2)).squeeze(-1))  # [B, F]

    # the sine source (SineGen + SourceModuleHnNSF), on the device
    up = hift.f0_upsamp(f0[:, None])  # [B, 1, L]
    gen = hift.m_source.l_sin_gen
    harmonics = torch.arange(1, gen.harmonic_num + 2, device=mel.device, dtype=up.dtype)[None, :, None]
    f_mat = up * harmonics / gen.sampling_rate
    theta = 2 * np.pi * (torch.cumsum(f_mat, dim=-1) % 1)
    sine = gen.sine_amp * torch.sin(theta + phase)
    uv = (up > gen.voiced_threshold).to(torch.float32)
    noise_amp = uv * gen.noise_std + (1 - uv) * gen.sine_amp / 3
    sine = sine * uv + noise_amp * noise
    s = hift.m_source.l_tanh(hift.m_source.l_linear(sine.transpose(1, 2))).transpose(1, 2)  # [B, 1, L]
    samples = s.shape[-1]
    pos = torch.arange(samples, device=mel.device)[None, None, :]
    n_cache = min(cache.shape[-1], samples)
    carried = F.pad(cache[:, None, :n_cache], (0, samples - n_cache))
    s = torch.where(pos < cache_len[:, None, None], carried, s)

    # decode: the excitation's STFT, with torch.stft's reflection written past each row's end
    n_fft, hop = hift.istft_params["n_fft"], hift.istft_params["hop_len"]
    half = n_fft // 2
    valid = frames * (samples // width)  # samples per row
    ext = F.pad(s[:, 0], (0, half))
    k = torch.arange(half, device=mel.device)
    mirror_from = (valid[:, None] - 2 - k[None, :]).clamp_min(0)
    ext = ext.scatter(1, valid[:, None] + k[None, :], ext.gather(1, mirror_from))
    spec = torch.view_as_real(torch.stft(ext, n_fft, hop, n_fft, window=hift.stft_window, return_complex=True))
    spec = spec[:, :, : samples // hop + 1]  # the frames of the unextended length
    stft_mask = _frame_mask(valid // hop + 1, spec.shape[2])
    s_stft = torch.cat([spec[..., 0], spec[..., 1]], dim=1) * stft_mask

    x = hift.conv_pre(mel)
    res = [width]
    for i in range(hift.num_upsamples):
        x = F.leaky_relu(x, hift.lrelu_slope)
        x = hift.ups[i](x * _frame_mask(frames * res[-1] // width, x.shape[-1]))
        res.append(x.shape[-1])
        lens = frames * (res[-1] // width)
        if i == hift.num_upsamples - 1:
            x = hift.reflection_pad(x)
            lens = lens + 1
        m = _frame_mask(lens, x.shape[-1])
        si = hift.source_downs[i](s_stft)
        si = _masked_resblock(hift.source_resblocks[i], si, m, lens, snake)
        x = x + si
        xs = None
        for j in range(hift.num_kernels):
            y = _masked_resblock(hift.resblocks[i * hift.num_kernels + j], x, m, lens, snake)
            xs = y if xs is None else xs + y
        x = xs / hift.num_kernels
    x = F.leaky_relu(x)
    x = hift.conv_post(x * m)
    magnitude = torch.clip(torch.exp(x[:, : half + 1, :]), max=1e2)
    phase_ = torch.sin(x[:, half + 1:, :])

    # inverse STFT: overlap-add, normalised by the envelope of the row's own frames
    n_frames = x.shape[-1]
    spec_c = torch.complex(magnitude * torch.cos(phase_), magnitude * torch.sin(phase_))
    window = hift.stft_window
    chunks = torch.fft.irfft(spec_c, n=n_fft, dim=1) * window[None, :, None] * m  # [B, n_fft, frames]
    length = n_fft + hop * (n_frames - 1)
    y = F.fold(chunks, (1, length), (1, n_fft), stride=(1, hop))[:, 0, 0]
    env = F.fold((window ** 2)[None, :, None] * m, (1, length), (1, n_fft), stride=(1, hop))[:, 0, 0]
    y = y / env.clamp_min(1e-11)
    wave = torch.clamp(y[:, half:half + hop * (n_frames - 1)], -hift.audio_limit, hift.audio_limit)
    return wave, s[:, 0]


class FusedSnake:
    """``snake_kernel.snake_masked``, or the same in PyTorch ops once the kernel has failed to build
    or run (a toolchain without a C compiler, say): that costs speed, not audio."""

    def __init__(self) -> None:
        from voxgate_server.engines.chatterbox_fast.s3gen import snake_kernel  # imports Triton

        self._k = snake_kernel
        self.broken: str | None = None

    def __call__(self, x: torch.Tensor, alpha: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if self.broken is None:
            try:
                return self._k.snake_masked(x, alpha, lens)
            except Exception as exc:  # noqa: BLE001 - logged once, then PyTorch's ops for good
                self.broken = repr(exc)[:300]
                log.warning("the fused Snake kernel failed, using PyTorch's ops: %s", self.broken)
        return self._k.snake_masked_reference(x, alpha, lens)


def fused_snake_for(hift: torch.nn.Module, device: torch.device) -> FusedSnake | None:
    """A fused Snake for this HiFT on CUDA when Triton can build kernels here and every Snake has
    a linear-scale alpha (what the kernel computes); otherwise None (PyTorch's ops)."""
    from voxgate_server.engines.chatterbox_fast.t3 import fused_step

    if device.type != "cuda" or not fused_step.available():
        return None
    snakes = [a for blocks in (hift.resblocks, hift.source_resblocks) for b in blocks
              for a in (*b.activations1, *b.activations2)]
    if any(getattr(a, "alpha_logscale", True) for a in snakes):
        return None
    return FusedSnake()


@dataclass
class _HiftInputs:
    mel: torch.Tensor  # [B, 80, F]
    frames: torch.Tensor  # [B]
    cache: torch.Tensor  # [B, 480 F]
    cache_len: torch.Tensor  # [B]


class HiftRunner:
    """HiFT for batches of mel pieces, through a CUDA graph per (batch bucket, frame bucket) when on
    CUDA and the batch has at most ``graph_batch`` pieces, eagerly otherwise. A lone piece is
    padded to ``frame_step`` frames, several to ``batch_frame_step`` (as ``FlowRunner``). The
    sine source's random draws are made inside the call, so a graph holds no buffer for them.
    One thread only."""

    frame_step = 32
    batch_frame_step = 64
    fused_snake = True

    def __init__(self, hift: torch.nn.Module, *, graph_batch: int = 16, graph_pool: Any = None) -> None:
        self.hift = hift
        self.device = next(hift.parameters()).device
        self.graph_batch = graph_batch if self.device.type == "cuda" else 0
        self.graphs = GraphCache(self.device, graph_pool)
        self.last_replayed = False  # whether the last run replayed a graph
        # Snake and the row mask in one kernel (``snake_kernel.py``); the class attribute lets
        # the GPU bench compare against PyTorch's ops
        self.snake = fused_snake_for(hift, self.device) if self.fused_snake else None
        self.samples_per_frame = int(np.prod([u.stride[0] for u in hift.ups])) * hift.istft_params["hop_len"]

    def _empty(self, rows: int, width: int) -> _HiftInputs:
        dev, n = self.device, width * self.samples_per_frame
        return _HiftInputs(torch.zeros(rows, N_MELS, width, device=dev), torch.ones(rows, dtype=torch.long, device=dev),
                           torch.zeros(rows, n, device=dev), torch.zeros(rows, dtype=torch.long, device=dev))

    def _wave(self, x: _HiftInputs) -> tuple[torch.Tensor, torch.Tensor]:
        # the sine source's draws, as upstream makes them (uniform phases, the fundamental's 0;
        # standard normal noise), drawn in the call: a graph draws afresh at every replay
        rows, harmonics = x.mel.shape[0], self.hift.m_source.l_sin_gen.harmonic_num + 1
        phase = torch.empty(rows, harmonics, 1, device=self.device).uniform_(-np.pi, np.pi)
        phase[:, 0] = 0
        noise = torch.randn(rows, harmonics, x.cache.shape[-1], device=self.device)
        return hift_wave(self.hift, x.mel, x.frames, phase, noise, x.cache, x.cache_len, self.snake)

    def replays(self, pieces: int) -> bool:
        """Whether a call of ``pieces`` pieces replays a graph (else it runs eagerly)."""
        return pieces <= self.graph_batch and self.graphs.broken is None

    def graph_shape(self, pieces: int, widest: int) -> tuple[int, int]:
        """(rows, frames) a call of ``pieces`` pieces, the widest ``widest`` frames, is padded to as
        a graph."""
        return padded_shape(pieces, widest, self.frame_step, self.batch_frame_step)

    def call_frames(self, pieces: int, widest: int) -> int:
        """Mel frames (rows x padded width) a call holds activations for (the worker's budget)."""
        rows, width = self.graph_shape(pieces, widest) if self.replays(pieces) else (pieces, widest)
        return rows * width

    def run(self, mels: list[torch.Tensor], caches: list[torch.Tensor | None],
            capture: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(wave, excitation), each [B, 480 F] on the device for the widest F: row ``i`` is valid for
        ``480 * mels[i].shape[-1]`` samples (the caller's to copy before the next call).
        ``capture=False``: a shape not captured yet runs eagerly."""
        widest = max(m.shape[-1] for m in mels)
        self.last_replayed = False
        if self.replays(len(mels)):
            key = self.graph_shape(len(mels), widest)
            entry = self.graphs.get_or_capture(key, lambda: self._empty(*key), self._wave, capture=capture)
            if entry is not None:
                self.last_replayed = True
                self._fill(entry.inputs, mels, caches)
                entry.graph.replay()
                return entry.out
        inputs = self._empty(len(mels), widest)
        self._fill(inputs, mels, caches)
        return self._wave(inputs)

    def _fill(self, x: _HiftInputs, mels: list[torch.Tensor], caches: list[torch.Tensor | None]) -> None:
        x.mel.zero_()
        frames = torch.ones(x.mel.shape[0], dtype=torch.long)
        cache_len = torch.zeros(x.mel.shape[0], dtype=torch.long)
        for i, (m, c) in enumerate(zip(mels, caches)):
            x.mel[i, :, : m.shape[-1]] = m
            frames[i] = m.shape[-1]
            if c is not None and c.numel():
                n = min(c.shape[-1], x.cache.shape[-1])
                x.cache[i, :n] = c.reshape(-1)[:n]
                cache_len[i] = n
        if self.device.type == "cuda":
            frames, cache_len = frames.pin_memory(), cache_len.pin_memory()
        x.frames.copy_(frames, non_blocking=True)
        x.cache_len.copy_(cache_len, non_blocking=True)
