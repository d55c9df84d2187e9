"""S3Gen's flow (speech tokens -> mel) as fixed-shape calls that CUDA graphs replay.

One piece through upstream's ``flow.inference`` is ~3500 small kernels launched from Python:
on an H200 ~60 ms of wall clock for ~28 ms of GPU work (docs/gpu-performance.md), and those
launches compete with the T3 decoder's thread for the GIL. That call is the first chunk's
latency and, after T3 has finished, most of a clip's tail. Replayed as a CUDA graph it is one
launch.

``flow_mel`` restates ``CausalMaskedDiffWithXvec.inference`` (``finalize=True``, meanflow; the
same modules in the same order) without what stops a capture: the host round-trips (the
token range check's ``.any()``, ``make_pad_mask``'s ``.max().item()``), the progress bar, and
noise drawn at a length known only per call. Rows are padded to a width bucket; the padding is
masked (attention masks, convolutions over masked inputs, causal convolutions that look back
only) and set back to zero where upstream leaves it non-zero before a look-ahead (``encode``),
so the voiced frames do not depend on it: ``tests/chatterbox/test_s3gen_graphs.py`` checks them
against upstream's call with the same noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from voxgate_server.engines.chatterbox_fast.s3gen.graph_cache import GraphCache, padded_shape
from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_syncfree import add_optional_chunk_mask

MEL_PER_TOKEN = 2
N_MELS = 80


def flow_mel(flow: torch.nn.Module, tokens: torch.Tensor, lens: torch.Tensor, cond: torch.Tensor,
             spks: torch.Tensor, z: torch.Tensor, t_span: torch.Tensor) -> torch.Tensor:
    """Mel [B, 80, 2W] for padded rows: ``tokens`` [B, W] (the voice's prompt tokens, then the
    piece's, then anything), ``lens`` [B] (prompt + piece), ``cond`` [B, 80, 2W] (the prompt's
    mel, zeros after), ``spks`` [B, 80] (projected speaker embedding, ``speaker_projection``),
    ``z`` [B, 80, 2W] noise, ``t_span`` [steps + 1] meanflow times."""
    width = tokens.shape[1]
    valid = torch.arange(width, device=tokens.device)[None, :] < lens[:, None]
    x = flow.input_embedding(tokens) * valid.unsqueeze(-1).to(spks.dtype)
    h, h_masks = encode(flow.encoder, x, lens)  # [B, 2W, C], [B, 1, 2W]
    h = flow.encoder_proj(h)
    estimator = flow.decoder.estimator
    dtype = estimator.dtype
    mu = h.transpose(1, 2).contiguous().to(dtype)
    mask = h_masks.to(dtype)
    x, spks, cond, t_span = z.to(dtype), spks.to(dtype), cond.to(dtype), t_span.to(dtype)
    for i in range(t_span.shape[0] - 1):
        t, r = t_span[i:i + 1], t_span[i + 1:i + 2]
        dxdt = estimator(x, mask=mask, mu=mu, t=t, spks=spks, cond=cond, r=r)
        x = x + (r - t) * dxdt
    return x.float()


def encode(enc: torch.nn.Module, xs: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``UpsampleConformerEncoder.forward`` for inference, with the padding set back to zero after
    the input embedding: its LayerNorm turns padding into its bias, and the pre-look-ahead
    convolution would read that where an unpadded call reads zeros (so upstream's own padded
    batches voice a piece's last tokens slightly differently from one piece alone)."""
    masks = torch.arange(xs.size(1), device=xs.device)[None, None, :] < lens[:, None, None]  # [B, 1, T]
    if enc.global_cmvn is not None:
        xs = enc.global_cmvn(xs)
    xs, pos_emb, masks = enc.embed(xs, masks)
    xs = xs * masks.transpose(1, 2).to(xs.dtype)
    chunk_masks = add_optional_chunk_mask(xs, masks, enc.use_dynamic_chunk, enc.use_dynamic_left_chunk, 0,
                                          enc.static_chunk_size, -1)
    xs = enc.pre_lookahead_layer(xs)
    xs = enc.forward_layers(xs, chunk_masks, pos_emb, masks)
    xs, lens = enc.up_layer(xs.transpose(1, 2).contiguous(), lens)
    xs = xs.transpose(1, 2).contiguous()
    masks = torch.arange(xs.size(1), device=xs.device)[None, None, :] < lens[:, None, None]
    xs, pos_emb, masks = enc.up_embed(xs, masks)
    chunk_masks = add_optional_chunk_mask(xs, masks, enc.use_dynamic_chunk, enc.use_dynamic_left_chunk, 0,
                                          enc.static_chunk_size * enc.up_layer.stride, -1)
    xs = enc.forward_up_layers(xs, chunk_masks, pos_emb, masks)
    if enc.normalize_before:
        xs = enc.after_norm(xs)
    return xs, masks


def speaker_projection(flow: torch.nn.Module, embedding: torch.Tensor) -> torch.Tensor:
    """The flow's speaker input [1, 80] from a voice's x-vector, as upstream computes it per call."""
    return flow.spk_embed_affine_layer(F.normalize(torch.atleast_2d(embedding).float(), dim=1))


@dataclass
class _FlowInputs:
    tokens: torch.Tensor  # [B, W]
    lens: torch.Tensor  # [B]
    cond: torch.Tensor  # [B, 80, 2W]
    spks: torch.Tensor  # [B, 80]
    z: torch.Tensor  # [B, 80, 2W]

    @classmethod
    def empty(cls, rows: int, width: int, device: torch.device) -> "_FlowInputs":
        frames = MEL_PER_TOKEN * width
        return cls(torch.zeros(rows, width, dtype=torch.long, device=device),
                   torch.ones(rows, dtype=torch.long, device=device),
                   torch.zeros(rows, N_MELS, frames, device=device), torch.zeros(rows, N_MELS, device=device),
                   torch.randn(rows, N_MELS, frames, device=device))


class FlowRunner:
    """Runs batches of flow pieces of one voice, through a CUDA graph per (batch bucket, width
    bucket) when on CUDA and the batch has at most ``graph_batch`` pieces, eagerly otherwise.
    Eager, a call of any size costs ~100 ms of launches from Python (H200), more than the GPU
    time of 16 pieces, and holds the GIL the T3 decoder and the other requests need; a graph is
    one launch. A lone piece is padded to ``width_step`` tokens (the first chunk's latency),
    several to ``batch_width_step`` (few shapes to capture; padding costs GPU time only).
    Graphs are captured on first use (or ahead, ``S3GenWorker.warm_graphs``); use a runner from
    one thread only."""

    width_step = 32  # tokens (voice prompt + piece): one piece's rows are padded to a multiple
    batch_width_step = 64  # tokens, for a call of several pieces (128: 4-6% fewer audio s/s at 16, H200)

    def __init__(self, flow: torch.nn.Module, *, n_timesteps: int = 2, graph_batch: int = 16,
                 bf16: bool = False, graph_pool: Any = None) -> None:
        self.flow = flow
        self.device = next(flow.parameters()).device
        self.t_span = torch.linspace(0, 1, n_timesteps + 1, device=self.device)
        on_cuda = self.device.type == "cuda"
        self.graph_batch = graph_batch if on_cuda else 0
        self.bf16 = bf16 and on_cuda
        self.graphs = GraphCache(self.device, graph_pool)
        self.last_replayed = False  # whether the last run replayed a graph

    def _autocast(self) -> Any:
        # cache_enabled=False: autocast's weight-cast cache must not outlive a graph capture
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if self.bf16 else nullcontext()

    def _mel(self, x: _FlowInputs) -> torch.Tensor:
        return flow_mel(self.flow, x.tokens, x.lens, x.cond, x.spks, x.z, self.t_span)

    def replays(self, pieces: int) -> bool:
        """Whether a call of ``pieces`` pieces replays a graph (else it runs eagerly)."""
        return pieces <= self.graph_batch and self.graphs.broken is None

    def graph_shape(self, pieces: int, longest: int) -> tuple[int, int]:
        """(rows, tokens) a call of ``pieces`` pieces, the longest ``longest`` tokens with the
        prompt, is padded to as a graph."""
        return padded_shape(pieces, longest, self.width_step, self.batch_width_step)

    def call_frames(self, pieces: int, longest: int) -> int:
        """Mel frames (rows x padded width) a call holds activations for: what the worker's frame
        budget counts."""
        rows, width = self.graph_shape(pieces, longest) if self.replays(pieces) else (pieces, longest)
        return rows * MEL_PER_TOKEN * width

    def run(self, pieces: Sequence[Sequence[int]], ref: dict, capture: bool = True) -> list[torch.Tensor]:
        """Mel [80, 2 * len(piece)] (float32, on the device, the caller's to keep) of each piece
        after the voice's prompt (``ref``: S3Gen's ref dict of one voice). ``capture=False``: a
        shape not captured yet runs eagerly (one call instead of a capture's three)."""
        prompt = ref["prompt_token"].to(self.device).reshape(-1)
        longest = int(prompt.shape[0]) + max(len(p) for p in pieces)
        entry = None
        if self.replays(len(pieces)):
            key = self.graph_shape(len(pieces), longest)
            entry = self.graphs.get_or_capture(key, lambda: _FlowInputs.empty(*key, self.device), self._mel,
                                               self._autocast, capture=capture)
        self.last_replayed = entry is not None
        if entry is not None:
            self._fill(entry.inputs, pieces, ref, prompt)
            entry.graph.replay()
            out = entry.out
        else:
            inputs = _FlowInputs.empty(len(pieces), longest, self.device)
            self._fill(inputs, pieces, ref, prompt)
            with self._autocast():
                out = self._mel(inputs)
        a = int(ref["prompt_feat"].shape[1])  # upstream keeps the frames after the prompt's mel
        return [out[i, :, a:a + MEL_PER_TOKEN * len(p)].clone() for i, p in enumerate(pieces)]

    def _fill(self, x: _FlowInputs, pieces: Sequence[Sequence[int]], ref: dict, prompt: torch.Tensor) -> None:
        n_prompt = int(prompt.shape[0])
        rows = len(pieces)
        host = torch.zeros(x.tokens.shape, dtype=torch.long)
        lens_host = torch.ones(x.tokens.shape[0], dtype=torch.long)  # spare rows: one token, masked
        for i, p in enumerate(pieces):
            host[i, n_prompt:n_prompt + len(p)] = torch.tensor(list(p), dtype=torch.long)
            lens_host[i] = n_prompt + len(p)
        if self.device.type == "cuda":
            host, lens_host = host.pin_memory(), lens_host.pin_memory()
        x.tokens.copy_(host, non_blocking=True)
        x.tokens[:rows, :n_prompt] = prompt
        x.lens.copy_(lens_host, non_blocking=True)
        feat = ref["prompt_feat"].to(self.device).reshape(-1, N_MELS).transpose(0, 1)  # [80, 2P]
        x.cond.zero_()
        x.cond[:rows, :, :feat.shape[1]] = feat
        x.spks.copy_(speaker_projection(self.flow, ref["embedding"].to(self.device)).expand_as(x.spks))
        x.z.normal_()
