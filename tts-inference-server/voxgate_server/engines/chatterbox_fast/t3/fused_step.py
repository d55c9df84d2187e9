"""``FusedDecodeStep``: one T3 decode step as 5 Triton launches a layer (see ``fused_kernels``).

It reads ``StaticGPT2``'s weights and KV cache in place and writes into buffers it owns, so it
can be captured in a CUDA graph like the plain step; the decoder uses it instead of
``StaticGPT2.decode`` + ``logits`` when ``fused`` is on. Prefill stays on the plain path (eager,
whole prompts), where launches are not what costs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from voxgate_server.engines.chatterbox_fast.t3.gpt2_static import StaticGPT2

BLOCK_B = 16  # rows per program: tl.dot's smallest tile, and the default largest batch


@dataclass(frozen=True)
class LinearConfig:
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 1  # programs sharing one tile's K (``linear_kernel``)


# GPU tiles: bench/knobs/gpu_knobs_bench.py --sections fusedcfg (H200) picks them matrix by matrix.
# Without PDL (before Hopper), K loops over blocks and only fc2 (K = 4096) gains from splitting it.
CUDA_CONFIGS: dict[str, LinearConfig] = {
    "qkv": LinearConfig(32, 256, 4, 3),
    "proj": LinearConfig(16, 512, 4, 3),
    "fc": LinearConfig(32, 256, 4, 3),
    "fc2": LinearConfig(32, 256, 4, 3, 8),
    "head": LinearConfig(64, 256, 4, 3),
}
# With PDL (Hopper) a program's share of K is one block: its weights are read before the wait.
PDL_CONFIGS: dict[str, LinearConfig] = {
    "qkv": LinearConfig(32, 1024, 4, 3, 1),
    "proj": LinearConfig(64, 256, 4, 3, 4),
    "fc": LinearConfig(64, 256, 4, 3, 4),
    "fc2": LinearConfig(64, 512, 4, 3, 8),
    "head": LinearConfig(64, 128, 4, 3, 8),
}
# float32 weights (the GPU bench's exactness check) are twice the bytes: half-width tiles
PDL_FP32_CONFIGS: dict[str, LinearConfig] = {
    "qkv": LinearConfig(32, 256, 4, 1, 4),
    "proj": LinearConfig(32, 256, 4, 1, 4),
    "fc": LinearConfig(32, 256, 4, 1, 4),
    "fc2": LinearConfig(32, 512, 4, 1, 8),
    "head": LinearConfig(32, 128, 4, 1, 8),
}
# attention programs wanted per step: fewer (row, head) pairs than this split their keys (H200:
# one row 1.24 -> 0.98 ms a step with 8 splits; 16 rows 1.45 -> 1.38 ms with 2)
ATTENTION_PROGRAMS = 512
# the interpreter (CPU, CI) runs programs one by one in Python: few, large ones; K split in two,
# so CI runs the split path's partial sums and counts too
INTERPRETER_CONFIG = LinearConfig(1024, 1024, split_k=2)
MAX_SPLIT_K = 8


def available() -> bool:
    """Triton importable (CUDA builds of torch bring it; CI installs it for the interpreter),
    and what its JIT needs to build each kernel's launcher: a C compiler and Python's headers."""
    if importlib.util.find_spec("triton") is None:
        return False
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return cc is not None and headers.exists()


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def pdl_supported(device: torch.device) -> bool:
    """Programmatic dependent launch: Hopper (compute capability 9) and later."""
    return device.type == "cuda" and not interpreting() and torch.cuda.get_device_capability(device)[0] >= 9


def _transpose_weights(model: StaticGPT2) -> None:
    """Store each matrix as ``[N, K]`` (a program's rows of W are then contiguous, which the
    kernels read far faster) and keep ``[K, N]`` views of it for the plain prefill; no copy is
    kept of the old layout."""
    for layer in model.layers:
        for name in ("attn_w", "proj_w", "fc_w", "fc2_w"):
            w = getattr(layer, name)
            if w.stride(1) != 1:
                continue  # already a view of an [N, K] matrix
            setattr(layer, name, w.t().contiguous().t())


class FusedDecodeStep:
    """Embed, 24 fused layers, LayerNorm + speech head: logits ``[B, V]`` float32."""

    def __init__(self, model: StaticGPT2, *, transpose: bool | None = None) -> None:
        from voxgate_server.engines.chatterbox_fast.t3 import fused_kernels

        on_cuda = model.device.type == "cuda"
        if not on_cuda and not interpreting():
            raise RuntimeError("the fused step needs CUDA (or TRITON_INTERPRET=1 on the CPU)")
        if model.max_batch > BLOCK_B and not on_cuda:
            raise ValueError(f"the interpreter path runs at most {BLOCK_B} rows")
        self.k = fused_kernels
        self.m = model
        if transpose if transpose is not None else on_cuda:
            _transpose_weights(model)
        self.ieee = model.dtype == torch.float32
        # tunable in place (bench/knobs/gpu_knobs_bench.py --sections fusedcfg)
        # each kernel launched as a programmatic dependent of the one before (weights read early)
        self.pdl = pdl_supported(model.device)
        if not on_cuda:
            self.configs = {n: INTERPRETER_CONFIG for n in CUDA_CONFIGS}
        else:
            self.configs = dict(CUDA_CONFIGS if not self.pdl else PDL_FP32_CONFIGS if self.ieee else PDL_CONFIGS)
        self.block_l = 64 if on_cuda else 1024
        self.hb = 1 if on_cuda else model.n_head
        self.attn_warps = 4
        self.max_splits = 8 if on_cuda else 2
        self.attention_programs = ATTENTION_PROGRAMS
        mb, c, dev, dt = model.max_batch, model.dim, model.device, model.dtype
        self.x = torch.zeros(mb, c, device=dev, dtype=dt)
        self.qkv = torch.zeros(mb, 3 * c, device=dev, dtype=dt)
        self.attn = torch.zeros(mb, c, device=dev, dtype=dt)
        self.h = torch.zeros(mb, 4 * c, device=dev, dtype=dt)
        vocab = model.head_w.shape[0]
        self.logits = torch.zeros(mb, vocab, device=dev, dtype=torch.float32)
        self.head_b = model.head_b if model.head_b is not None else torch.zeros(vocab, device=dev, dtype=dt)
        self.scale = model.head_dim ** -0.5
        self.part = torch.zeros(mb * self.max_splits * model.n_head * (model.head_dim + 2), device=dev,
                                dtype=torch.float32)
        # split-K partial sums [split, B, N] of the widest matrix, and one arrival count per tile
        self.linear_part = torch.zeros(MAX_SPLIT_K * mb * max(vocab, 4 * c), device=dev, dtype=torch.float32)
        self.linear_lock = torch.zeros(max(vocab, 4 * c) * -(-mb // BLOCK_B), device=dev, dtype=torch.int32)

    def _linear(self, name: str, x: Tensor, w: Tensor, b: Tensor, out: Tensor, B: int, *, conv1d: bool = True,
                ln: tuple[Tensor, Tensor] | None = None, gelu: bool = False, residual: bool = False) -> None:
        """``w`` in GPT-2's Conv1D layout ``[K, N]`` (any strides) or, ``conv1d=False``, ``[N, K]``."""
        cfg = self.configs[name]
        N, K = out.shape[1], x.shape[1]
        split = cfg.split_k
        if split > MAX_SPLIT_K or K % split:
            raise ValueError(f"{name}: split_k {split} does not divide K={K} (at most {MAX_SPLIT_K})")
        block_k = min(cfg.block_k, K // split)
        if (K // split) % block_k:
            raise ValueError(f"{name}: block_k {block_k} does not divide K/split_k = {K // split}")
        s_n, s_k = (w.stride(1), w.stride(0)) if conv1d else (w.stride(0), w.stride(1))
        lnw, lnb = ln if ln is not None else (b, b)
        pdl = self.pdl and block_k == K // split  # weights read early: the share of K is one block
        grid = (-(-N // cfg.block_n), -(-B // BLOCK_B), split)
        self.k.linear_kernel[grid](x, w, b, out, lnw, lnb, self.linear_part, self.linear_lock, B, N, s_n, s_k,
                                   self.m.eps, K=K, LN=ln is not None, GELU=gelu, RESIDUAL=residual,
                                   IEEE=self.ieee, BLOCK_B=BLOCK_B, BLOCK_N=cfg.block_n, BLOCK_K=block_k,
                                   SPLIT_K=split, PDL=pdl, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                                   **self._pdl_launch(pdl))

    @staticmethod
    def _pdl_launch(pdl: bool) -> dict[str, bool]:
        return {"launch_pdl": True} if pdl else {}

    def splits(self, batch: int) -> int:
        """Key splits a (row, head) pair gets at this batch size (a power of two)."""
        n = 1
        while n < self.max_splits and batch * self.m.n_head * n * 2 <= self.attention_programs:
            n *= 2
        return n

    def __call__(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """One step for rows ``0..B-1``: writes each row's key/value at ``pos`` in the cache."""
        m, B = self.m, tokens.shape[0]
        x, qkv, attn, h = self.x[:B], self.qkv[:B], self.attn[:B], self.h[:B]
        splits = self.splits(B)
        pdl = self.pdl
        self.k.embed_kernel[(B,)](tokens, pos, m.speech_emb, m.wpe, x, C=m.dim, BLOCK_C=min(1024, m.dim), PDL=pdl,
                                  **self._pdl_launch(pdl))
        for i, layer in enumerate(m.layers):
            kv = m.kv_cache[i]  # [L, max_batch, 2, H, D]
            self._linear("qkv", x, layer.attn_w, layer.attn_b, qkv, B, ln=(layer.ln1_w, layer.ln1_b))
            self.k.attention_kernel[(B, m.n_head // self.hb, splits)](
                qkv, kv, pos, attn, self.part, self.scale, kv.stride(1), kv.stride(2), kv.stride(3), kv.stride(0),
                C=m.dim, D=m.head_dim, HB=self.hb, SPLITS=splits, BLOCK_L=self.block_l, PDL=pdl,
                num_warps=self.attn_warps, **self._pdl_launch(pdl))
            if splits > 1:
                self.k.attention_combine_kernel[(B, m.n_head)](self.part, attn, C=m.dim, D=m.head_dim, SPLITS=splits,
                                                               PDL=pdl, **self._pdl_launch(pdl))
            self._linear("proj", attn, layer.proj_w, layer.proj_b, x, B, residual=True)
            self._linear("fc", x, layer.fc_w, layer.fc_b, h, B, ln=(layer.ln2_w, layer.ln2_b), gelu=True)
            self._linear("fc2", h, layer.fc2_w, layer.fc2_b, x, B, residual=True)
        logits = self.logits[:B]
        self._linear("head", x, m.head_w, self.head_b, logits, B, conv1d=False, ln=(m.lnf_w, m.lnf_b))
        return logits
