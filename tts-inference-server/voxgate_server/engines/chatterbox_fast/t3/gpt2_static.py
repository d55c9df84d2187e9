"""Turbo's GPT-2-medium backbone re-stated over a static, batched KV cache.

Upstream's ``T3.inference_turbo`` runs Hugging Face's ``GPT2Model`` with a growing cache: every
step allocates, and ~400 small kernels are launched one by one from Python, so one token costs
~9.5 ms on an H200 while the arithmetic needs well under one. Here the same weights (read from
the loaded upstream module, never copied from disk again) drive a hand-written forward whose
decode step has fixed shapes: ``[batch bucket, 1]`` queries against a cache of ``max_len``
positions for ``max_batch`` rows, cut to a length bucket, so it can be captured once per
(batch, length) bucket as a CUDA graph and replayed. The cache is position-major
(``[layer, position, row, key/value, head, head_dim]``): on CUDA it is backed by physical memory
only up to the furthest position a request has reached (``engines/gpu/growable.py``). The maths is GPT-2's exactly (pre-LN,
``gelu_new``, scale 1/sqrt(head_dim), learned absolute positions); in float32 it reproduces
upstream's logits to rounding, which the CPU test checks token by token.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from voxgate_server.engines.gpu.cuda_checkpoint import CheckpointError
from voxgate_server.engines.gpu.remappable import remappable_zeros

log = logging.getLogger("voxgate.chatterbox_fast")
KV_GROW_STEP = 128  # positions a growing KV cache maps at a time (at batch 16: four 2 MiB pages a layer)

# Prefill attention without cuDNN: cuDNN builds an execution plan the first time it meets a
# shape (hundreds of ms), and prefill shapes (prompt length x requests admitted together) vary
# with every burst; flash (bf16) and memory-efficient (float32) attention need no plan.
_PREFILL_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    with sdpa_kernel(_PREFILL_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@dataclass
class _Layer:
    ln1_w: Tensor
    ln1_b: Tensor
    attn_w: Tensor  # [C, 3C] (GPT-2 Conv1D layout: y = x @ W + b)
    attn_b: Tensor
    proj_w: Tensor
    proj_b: Tensor
    ln2_w: Tensor
    ln2_b: Tensor
    fc_w: Tensor
    fc_b: Tensor
    fc2_w: Tensor
    fc2_b: Tensor

    def weights(self) -> tuple[Tensor, ...]:
        return (self.ln1_w, self.ln1_b, self.attn_w, self.attn_b, self.proj_w, self.proj_b,
                self.ln2_w, self.ln2_b, self.fc_w, self.fc_b, self.fc2_w, self.fc2_b)


class StaticGPT2:
    """Weights of one upstream T3 in ``dtype`` on ``device`` plus a static KV cache."""

    def __init__(self, t3: torch.nn.Module, *, device: torch.device, dtype: torch.dtype,
                 max_batch: int, max_len: int, kv_grow: bool = True) -> None:
        tf = t3.tfmr
        cfg = t3.cfg
        self.device = device
        self.dtype = dtype
        self.n_layer = cfg.n_layer
        self.n_head = cfg.n_head
        self.dim = cfg.hidden_size
        self.head_dim = self.dim // self.n_head
        self.eps = cfg.layer_norm_epsilon
        if getattr(cfg, "activation_function", "gelu_new") != "gelu_new":
            raise ValueError(f"unsupported activation {cfg.activation_function}")
        self.max_batch = max_batch
        self.max_len = max_len
        if max_len > cfg.n_positions:
            raise ValueError(f"max_len {max_len} > the model's {cfg.n_positions} positions")

        def w(t: Tensor) -> Tensor:
            return t.detach().to(device=device, dtype=dtype).contiguous()

        self.layers = [
            _Layer(w(b.ln_1.weight), w(b.ln_1.bias), w(b.attn.c_attn.weight), w(b.attn.c_attn.bias),
                   w(b.attn.c_proj.weight), w(b.attn.c_proj.bias), w(b.ln_2.weight), w(b.ln_2.bias),
                   w(b.mlp.c_fc.weight), w(b.mlp.c_fc.bias), w(b.mlp.c_proj.weight), w(b.mlp.c_proj.bias))
            for b in tf.h
        ]
        self.wpe = w(tf.wpe.weight[:max_len])
        self.lnf_w, self.lnf_b = w(tf.ln_f.weight), w(tf.ln_f.bias)
        self.speech_emb = w(t3.speech_emb.weight)
        self.head_w = w(t3.speech_head.weight)  # [V, C]
        self.head_b = w(t3.speech_head.bias) if t3.speech_head.bias is not None else None
        # keys and values side by side, so one indexed write stores both each step; positions
        # outermost in a layer, so the positions in use are one contiguous prefix of each layer
        self.kv_grow: Any = None  # growable.GrowableBuffer when the cache grows on demand
        self.kv_cache, self.kv_buffer = self._make_kv_cache(kv_grow)
        self.fused_gelu = dtype != torch.float32 and device.type == "cuda" and self._fused_gelu_ok()
        # a compiled layer when ``compile_layers`` ran; not ``self._decode_layer`` by default: a
        # bound method kept on ``self`` is a reference cycle, and the weights and the KV cache
        # would then outlive the decoder until the cyclic collector happens to run
        self._compiled_layer: Any = None

    def _position_bytes(self) -> int:
        return self.max_batch * 2 * self.n_head * self.head_dim * torch.empty((), dtype=self.dtype).element_size()

    def _make_kv_cache(self, grow: bool) -> tuple[Tensor, Any]:
        """``[n_layer, max_len, max_batch, 2, H, D]``. On CUDA it is either growable (only the
        positions requests reach hold memory, given back when idle) or remappable (all of it held,
        given back only by a park; ``VOXGATE_CHATTERBOX_KV_GROW=0``). On the CPU, or where the
        driver lacks the calls, it is a plain tensor. The second value is the buffer that parking
        releases, or None."""
        shape = (self.n_layer, self.max_len, self.max_batch, 2, self.n_head, self.head_dim)
        if grow and self.device.type == "cuda":
            try:
                return self._growable_kv_cache()
            except (CheckpointError, ValueError) as exc:
                log.warning("KV cache cannot grow on demand (%s): all of it is held", exc)
        return remappable_zeros(shape, self.dtype, self.device)

    def _growable_kv_cache(self) -> tuple[Tensor, Any]:
        from voxgate_server.engines.gpu import growable

        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        gran = growable.granularity(index)
        per_pos = self._position_bytes()
        step = gran // math.gcd(gran, per_pos)  # positions that fill whole pages
        lane_positions = -(-self.max_len // step) * step  # each layer starts on a page
        buf = growable.GrowableBuffer(self.n_layer, lane_positions * per_pos, index)
        buf.grow(1)  # PyTorch asks the driver about the first byte when it wraps the pointer
        raw = torch.as_tensor(buf, device=self.device)
        full = raw.view(self.dtype).view(self.n_layer, lane_positions, self.max_batch, 2, self.n_head, self.head_dim)
        self._kv_full = full
        full[:, : buf.mapped_bytes // per_pos].zero_()
        self.kv_grow = buf
        return full[:, : self.max_len], buf

    def ensure_positions(self, n: int) -> None:
        """Make positions ``0..n-1`` of every row usable (mapped, and zeroed when new), on the
        caller's CUDA stream. A no-op unless the cache grows on demand. Grows go in steps of
        ``KV_GROW_STEP`` positions: each grow is three driver calls per layer on the decoder's
        thread (H200: 1.2-1.8 ms for one 2 MiB page in each of 24 layers, 1.5 ms for four;
        bench/memory/kv_grow_probe.py), so a burst of 16 ten-second requests (about 660
        positions) grows the cache about 6 times instead of about 20."""
        buf = self.kv_grow
        if buf is None:
            return
        per_pos = self._position_bytes()
        n = -(-n // KV_GROW_STEP) * KV_GROW_STEP
        before, after = buf.grow(min(n, self.max_len) * per_pos)
        if after > before:
            # zeros, never a former tenant's bytes: the plain step's masked attention reads them
            self._kv_full[:, before // per_pos: after // per_pos].zero_()

    @property
    def kv_positions_mapped(self) -> int:
        """Positions backed by memory (all of them for a cache that does not grow)."""
        buf = self.kv_grow
        return self.max_len if buf is None else min(self.max_len, buf.mapped_bytes // self._position_bytes())

    def trim_kv(self) -> int:
        """Give back the growable cache's memory (bytes returned). The caller has synchronized:
        nothing may still run on it."""
        return self.kv_grow.trim() if self.kv_grow is not None else 0

    def compile_layers(self) -> None:
        """Decode through one ``torch.compile``d layer (the same code for all 24, weights passed
        in; dynamic batch and length, so a handful of compilations): Inductor fuses the residual
        adds into LayerNorm and the biases into the GELU and the cache write, so a step launches
        far fewer kernels. The CUDA graphs are still captured around it, per bucket."""
        self.fused_gelu = False  # cuBLASLt's epilogue is opaque to Inductor; let it fuse the GELU
        self._compiled_layer = torch.compile(self._decode_layer, dynamic=True, fullgraph=True)

    def _fused_gelu_ok(self) -> bool:
        """cuBLASLt's bias+GELU(tanh) epilogue saves one kernel per layer; use it only if it
        computes what ``gelu_new`` does (float32 keeps the plain ops: exactness vs upstream)."""
        try:
            layer = self.layers[0]
            x = torch.randn(4, self.dim, device=self.device, dtype=self.dtype)
            ref = F.gelu(torch.addmm(layer.fc_b, x, layer.fc_w).float(), approximate="tanh")
            out = torch._addmm_activation(layer.fc_b, x, layer.fc_w, use_gelu=True).float()
            return bool(((out - ref).norm() / ref.norm()) < 2e-2)
        except Exception:  # noqa: BLE001 - older torch or no cuBLASLt: plain ops
            return False

    # -- pieces --------------------------------------------------------------------------------

    def _ln(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.layer_norm(x, (self.dim,), w, b, self.eps)

    def _mlp(self, x: Tensor, fc_w: Tensor, fc_b: Tensor, fc2_w: Tensor, fc2_b: Tensor) -> Tensor:
        """GPT-2's MLP on ``x`` [..., C] (weights passed in: the compiled decode layer gets them
        as inputs, the same code for every layer)."""
        flat = x.reshape(-1, self.dim)
        if self.fused_gelu:
            h = torch._addmm_activation(fc_b, flat, fc_w, use_gelu=True)
        else:
            h = F.gelu(torch.addmm(fc_b, flat, fc_w), approximate="tanh")
        return torch.addmm(fc2_b, h, fc2_w).view(x.shape)

    def logits(self, hidden: Tensor) -> Tensor:
        """Final LayerNorm + speech head, in float32 for sampling. ``hidden``: [B, C]."""
        h = self._ln(hidden, self.lnf_w, self.lnf_b)
        out = F.linear(h, self.head_w, self.head_b)
        return out.float()

    # -- prefill (eager, variable length) --------------------------------------------------------

    def prefill(self, slots: list[int], embeds: list[Tensor]) -> Tensor:
        """Run each request's conditioning+text+start embeddings ``[T_i, C]`` into its slot's
        cache and return each one's last hidden state ``[n, C]``. Requests admitted together go
        in one pass: one launch per op for all of them instead of one per request each, which is
        what admitting a burst of requests costs. Prompts are padded at the end to the longest,
        so causal attention alone keeps the padding out of every real position; a slot's cache
        rows past its own length are overwritten by its decode steps before they are ever
        attended to."""
        n, lengths = len(slots), [e.shape[0] for e in embeds]
        T = max(lengths)
        if T >= self.max_len:
            raise ValueError(f"prompt of {T} positions does not fit max_len {self.max_len}")
        H, D, dev = self.n_head, self.head_dim, self.kv_cache.device
        x = torch.zeros(n, T, self.dim, device=dev, dtype=self.dtype)
        for i, e in enumerate(embeds):
            x[i, : lengths[i]] = e.to(self.dtype)
        x = x + self.wpe[:T]
        rows = torch.tensor(slots, device=dev)
        for i, layer in enumerate(self.layers):
            h = self._ln(x, layer.ln1_w, layer.ln1_b).view(n * T, self.dim)
            qkv = torch.addmm(layer.attn_b, h, layer.attn_w)
            q, k, v = qkv.view(n, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each [n, H, T, D]
            layer_kv = self.kv_cache[i]  # [L, max_batch, 2, H, D]
            layer_kv[:T, rows, 0] = k.permute(2, 0, 1, 3)  # [T, n, H, D]
            layer_kv[:T, rows, 1] = v.permute(2, 0, 1, 3)
            a = _causal_attention(q, k, v)
            a = a.permute(0, 2, 1, 3).reshape(n * T, self.dim)
            x = x + torch.addmm(layer.proj_b, a, layer.proj_w).view(n, T, self.dim)
            x = x + self._mlp(self._ln(x, layer.ln2_w, layer.ln2_b), layer.fc_w, layer.fc_b, layer.fc2_w, layer.fc2_b)
        return x[torch.arange(n, device=dev), torch.tensor(lengths, device=dev) - 1]

    # -- one decode step for slots 0..B-1 (static shapes: graph-capturable) ---------------------

    def decode(self, tokens: Tensor, pos: Tensor, length: int) -> Tensor:
        """Embed ``tokens`` [B] at positions ``pos`` [B], attend over cache[:length]; returns
        hidden [B, C]. Writes this step's keys/values at ``pos``."""
        B = tokens.shape[0]
        x = F.embedding(tokens, self.speech_emb) + F.embedding(pos, self.wpe)  # [B, C]
        rows = torch.arange(B, device=tokens.device)
        # key j is visible to row b iff j <= pos[b]; one additive mask for all layers
        visible = torch.arange(length, device=tokens.device)[None, :] <= pos[:, None]
        mask = torch.zeros(B, 1, 1, length, device=tokens.device, dtype=self.dtype)
        mask = mask.masked_fill(~visible[:, None, None, :], float("-inf"))
        layer_fn = self._compiled_layer or self._decode_layer
        for i, layer in enumerate(self.layers):
            x = layer_fn(x, self.kv_cache[i], rows, pos, mask, length, layer.weights())
        return x

    def _decode_layer(self, x: Tensor, kv: Tensor, rows: Tensor, pos: Tensor, mask: Tensor, length: int,
                      w: tuple[Tensor, ...]) -> Tensor:
        """One layer of one decode step; ``kv`` is the layer's cache ``[L, max_batch, 2, H, D]``."""
        ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b = w
        B = x.shape[0]
        H, D = self.n_head, self.head_dim
        h = self._ln(x, ln1_w, ln1_b)
        qkv = torch.addmm(attn_b, h, attn_w).view(B, 3, H, D)
        kv[pos, rows] = qkv[:, 1:]  # [B, 2, H, D]
        keys = kv[:length, :B, 0].permute(1, 2, 0, 3)  # [B, H, length, D]
        values = kv[:length, :B, 1].permute(1, 2, 0, 3)
        a = F.scaled_dot_product_attention(qkv[:, 0, :, None], keys, values, attn_mask=mask)
        a = a.reshape(B, self.dim)
        x = x + torch.addmm(proj_b, a, proj_w)
        return x + self._mlp(self._ln(x, ln2_w, ln2_b), fc_w, fc_b, fc2_w, fc2_b)
