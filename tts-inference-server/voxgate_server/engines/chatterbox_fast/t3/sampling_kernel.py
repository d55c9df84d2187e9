"""``sampling.sample`` as one Triton kernel, for the fused decode step.

Replayed in the step's CUDA graph, ``sample`` is ~85 small PyTorch kernels (a radix sort of the
vocabulary, gathers, a scatter, a cumsum, the hash as a dozen int64 ops...), ~0.14 ms of a
~1 ms step on an H200. Here one program per row holds the row's whole vocabulary in one block
and does everything in registers: temperature, top-k, top-p, repetition penalty, the
counter-based Gumbel noise, the argmax, and the history and step updates.

Top-k and top-p need thresholds, not an order, so there is no sort (a bitonic ``tl.sort`` of
8192 values is 91 compare-exchange passes, most of them across threads). Scores map to uint32
keys whose unsigned order is the float order, and both thresholds are one radix select: the
largest ``t`` with ``sum(w[key < t]) <= limit``, built two bits a pass from the top; a pass sums
``w`` below the candidates ``t | d << shift`` (d = 0..3) in one reduction of a [4, BLOCK] tile,
and as the sums grow with the candidate, how many of them stay within ``limit`` is the next two
bits. Top-k (HF: keep scores >= the k-th largest, ties kept) keeps ``key >= t`` with ``w`` = 1,
``limit = V - k``. Top-p (HF: drop a token when the ascending cumulative probability up to and
including it is ``<= 1 - top_p``, never the best token) keeps ``key >= min(t, best)`` with
``w`` = the top-k survivors' softmax and ``limit = 1 - top_p``. A row costs 35 block
reductions (max, 16 for top-k, the softmax denominator and 16 for top-p, argmax): 70 barriers
on sm_90. Greedy (``top_k == 1``) needs just the max (top-p keeps the best token anyway);
``top_k == V`` skips top-k, ``top_p == 1`` skips top-p.

Same tokens as ``sample`` except where it is decided by rounding or ties:

- top-p's cumulative sums are added in another order (and ``tl.exp`` is the GPU's fast one),
  so a token whose cumulative probability is within rounding of ``1 - top_p`` may land on the
  other side;
- equal scores on the top-p boundary are dropped or kept together, where the sort drops them by
  position;
- ``top_p == 1`` skips top-p: upstream's chain then drops only tokens whose probability
  underflows to 0 in float32 (more than ~87 below the best score), which the Gumbel noise
  (within [-2.9, 17.4]) can never lift to the top anyway;
- ``argmax(scores + noise)`` on exact ties takes the first index, as ``torch.argmax``.

Divisions are ``div_rn`` (Triton's ``/`` is approximate on the GPU; an order change after the
temperature would break greedy's argmax), ``tl.log`` is libdevice's ``logf`` (CUDA's, as
torch's), the hash is uint64 arithmetic (logical shifts, wrapping products) bit for bit, and the
kernel is compiled without FMA contraction, so the noise and the penalised scores round as in
PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingState

NUM_WARPS = 16  # 16 values a thread; sm_90: 128 registers, no spills (8 warps: 255, 4: spills)


@triton.jit
def _order_key(x):
    """float32 -> uint32 ordered as the floats (-0.0 onto +0.0, which ``<`` treats as equal):
    non-negative floats get the sign bit set, negative ones have every bit flipped."""
    b = tl.where(x == 0.0, 0.0, x).to(tl.int32, bitcast=True)
    return b.to(tl.uint32, bitcast=True) ^ tl.where(b < 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)


@triton.jit
def _radix_select(key, w, limit):
    """The largest uint32 ``t`` with ``sum(w[key < t]) <= limit`` (w >= 0, so the sum only grows
    with ``t``), two bits a pass: one reduction of a [4, BLOCK] tile sums below the candidates
    ``t | d << shift``, d = 0..3 (d = 0 is ``t`` itself, known to pass)."""
    t = tl.zeros([], tl.uint32)
    d4 = tl.arange(0, 4).to(tl.uint32)
    for sh in tl.static_range(30, -1, -2):
        below = tl.sum(tl.where(key[None, :] < (t | (d4 << sh))[:, None], w[None, :], 0.0), axis=1)
        # the sums apart without a cross-thread step: every thread holds all four
        even, odd = tl.split(tl.reshape(below, (2, 2)))
        _, s2 = tl.split(even)
        s1, s3 = tl.split(odd)
        t = t | (((s1 <= limit).to(tl.uint32) + (s2 <= limit).to(tl.uint32) + (s3 <= limit).to(tl.uint32)) << sh)
    return t


@triton.jit
def sample_kernel(logits_ptr, stride_l, temp_ptr, top_k_ptr, top_p_ptr, pen_ptr, seed_ptr, step_ptr, hist_ptr,
                  stride_h, out_ptr, scores_ptr, V, BLOCK_V: tl.constexpr, SCORES: tl.constexpr):
    """Row ``program_id``: ``out[row]`` = the sampled token, marked in ``history``; ``step``
    += 1. With ``SCORES`` the processed scores (what ``sampling.processed_scores`` returns)
    also go to ``scores`` [rows, V]."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_V)
    ok = offs < V
    temp = tl.load(temp_ptr + row)
    k = tl.load(top_k_ptr + row)
    top_p = tl.load(top_p_ptr + row)
    pen = tl.load(pen_ptr + row)
    seed = tl.load(seed_ptr + row)
    step = tl.load(step_ptr + row)
    x = tl.load(logits_ptr + row * stride_l + offs, mask=ok, other=float("-inf"))
    s = tl.math.div_rn(x, temp)
    m = tl.max(s, axis=0)
    key = tl.where(ok, _order_key(s), 0)  # (padding weighs nothing in either select)
    best = _order_key(m)
    # the kept scores: key >= cut
    cut = best * 0  # all of them (top_k == V)
    if k == 1:
        cut = best
    elif k < V:  # the k-th largest: at most V - k keys below it
        cut = _radix_select(key, ok.to(tl.float32), (V - k).to(tl.float32))
    if (top_p < 1.0) & (k != 1):  # drop what lies below 1 - top_p of the mass, never the best
        e = tl.where(key >= cut, tl.exp(s - m), 0.0)
        p = e * tl.math.div_rn(1.0, tl.sum(e, axis=0))
        cut = tl.maximum(cut, tl.minimum(_radix_select(key, p, 1.0 - top_p), best))
    s = tl.where(key >= cut, s, float("-inf"))
    seen = tl.load(hist_ptr + row * stride_h + offs, mask=ok, other=0) != 0
    s = tl.where(seen, tl.where(s < 0, s * pen, tl.math.div_rn(s, pen)), s)
    if SCORES:
        tl.store(scores_ptr + row * V + offs, s, mask=ok)
    # Gumbel-max with splitmix64 of seed + (step * V + id) * golden, as sampling.hashed_uniform
    z = seed.to(tl.uint64, bitcast=True) + (step.to(tl.uint64, bitcast=True) * V + offs) * 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    u = ((z >> 40).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    v = tl.where(ok, s - tl.log(-tl.log(u)), float("-inf"))
    tok = tl.argmax(v, axis=0, tie_break_left=True)
    tl.store(out_ptr + row, tok.to(tl.int64))
    tl.store(hist_ptr + row * stride_h + tok, 1)
    tl.store(step_ptr + row, step + 1)


class FusedSampler:
    """``sample(logits, state, arange(B))`` in one launch, into a token buffer it owns (so a
    CUDA graph can capture it: no host syncs, no data-dependent allocation)."""

    def __init__(self, state: SamplingState, *, num_warps: int = NUM_WARPS) -> None:
        self.st = state
        max_batch, vocab = state.history.shape
        self.vocab = vocab
        self.block_v = triton.next_power_of_2(vocab)
        self.num_warps = num_warps
        self.tokens = torch.zeros(max_batch, dtype=torch.int64, device=state.history.device)
        self._hist = state.history.view(torch.uint8)  # same memory; Triton reads bytes

    def __call__(self, logits: Tensor, scores: Tensor | None = None) -> Tensor:
        """Tokens ``[B]`` for float32 ``logits`` ``[B, V]`` (rows = slots 0..B-1); ``scores``, a
        contiguous float32 ``[B, V]``, also receives the processed scores (tests)."""
        B, V = logits.shape
        assert V == self.vocab and logits.stride(1) == 1 and logits.dtype == torch.float32
        assert scores is None or (scores.shape == logits.shape and scores.is_contiguous())
        st = self.st
        sample_kernel[(B,)](logits, logits.stride(0), st.temperature, st.top_k, st.top_p, st.penalty, st.seed,
                            st.step, self._hist, self._hist.stride(0), self.tokens,
                            scores if scores is not None else logits, V, BLOCK_V=self.block_v,
                            SCORES=scores is not None, num_warps=self.num_warps, enable_fp_fusion=False)
        return self.tokens[:B]
