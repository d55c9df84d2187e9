"""Triton kernels for a fused T3 decode step.

A replayed CUDA graph of the plain step still runs ~360 kernels, each a few microseconds of
mostly fixed cost (knobs bench: 1.15 ms of kernel time for ~0.2 ms worth of weight reads). These
kernels fold a layer into five launches:

- ``linear``: ``y = x @ W^T + b`` for a batch of at most a few dozen rows (a GEMV in all but
  name), with LayerNorm of ``x`` recomputed in its prologue (the row is 1024 values: cheaper than
  a launch), GELU (``gelu_new``) or the residual add in its epilogue;
- ``attention``: one query per (row, head) against the row's cached keys, online softmax; it
  also writes the step's own key and value into the cache (attending to them from registers,
  so no program reads what another writes);
- ``embed``: token + position embeddings.

Loops run to each row's own position (read on the device), so one graph per batch bucket
serves every length. Every kernel accumulates in float32; ``IEEE`` keeps float32 matmuls exact
(no TF32), which is what the equality tests use. Under ``TRITON_INTERPRET=1`` they run on the
CPU (float32), which is how CI checks them against the plain step.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gelu_tanh(x):
    # GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); tanh(u) = 2 sigmoid(2u) - 1
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (2.0 / (1.0 + tl.exp(-2.0 * u)))


@triton.jit
def linear_kernel(x_ptr, w_ptr, b_ptr, out_ptr, lnw_ptr, lnb_ptr, B, N, stride_wn, stride_wk, eps,
                  K: tl.constexpr, LN: tl.constexpr, GELU: tl.constexpr, RESIDUAL: tl.constexpr,
                  IEEE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[b, n] (+)= act(LN(x)[b] . W[n] + bias[n]); x [B, K] and out [B, N] contiguous."""
    pid_n = tl.program_id(0)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    b_ok = offs_b < B
    n_ok = offs_n < N
    if LN:
        s1 = tl.zeros((BLOCK_B,), tl.float32)
        s2 = tl.zeros((BLOCK_B,), tl.float32)
        for k0 in tl.static_range(0, K, BLOCK_K):  # unrolled (H200: same step time as a loop)
            offs_k = k0 + tl.arange(0, BLOCK_K)
            xv = tl.load(x_ptr + offs_b[:, None] * K + offs_k[None, :], mask=b_ok[:, None], other=0.0)
            xf = xv.to(tl.float32)
            s1 += tl.sum(xf, axis=1)
            if not IEEE:  # one pass (E[x^2] - mean^2): one latency chain fewer, float32 rounding
                s2 += tl.sum(xf * xf, axis=1)
        mean = s1 / K
        if IEEE:  # float32 (the exactness tests): variance about the mean, a second pass
            for k0 in tl.static_range(0, K, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                xv = tl.load(x_ptr + offs_b[:, None] * K + offs_k[None, :], mask=b_ok[:, None], other=0.0)
                d = xv.to(tl.float32) - mean[:, None]
                s2 += tl.sum(d * d, axis=1)
            var = s2 / K
        else:
            var = tl.maximum(s2 / K - mean * mean, 0.0)
        rstd = 1.0 / tl.sqrt(var + eps)
    acc = tl.zeros((BLOCK_B, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        xv = tl.load(x_ptr + offs_b[:, None] * K + offs_k[None, :], mask=b_ok[:, None], other=0.0)
        if LN:
            g = tl.load(lnw_ptr + offs_k).to(tl.float32)
            beta = tl.load(lnb_ptr + offs_k).to(tl.float32)
            xn = (xv.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]
            xv = xn.to(w_ptr.dtype.element_ty)  # what F.layer_norm hands the next matmul
        w = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :] * stride_wk, mask=n_ok[:, None],
                    other=0.0)
        if IEEE:
            acc += tl.dot(xv, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(xv, tl.trans(w))
    y = acc + tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if GELU:
        y = _gelu_tanh(y)
    out = out_ptr + offs_b[:, None] * N + offs_n[None, :]
    ok = b_ok[:, None] & n_ok[None, :]
    if RESIDUAL:
        y += tl.load(out, mask=ok, other=0.0).to(tl.float32)
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def attention_kernel(qkv_ptr, cache_ptr, pos_ptr, out_ptr, part_ptr, scale, stride_cb, stride_ckv, stride_ch,
                     stride_cl, C: tl.constexpr, D: tl.constexpr, HB: tl.constexpr, SPLITS: tl.constexpr,
                     BLOCK_L: tl.constexpr):
    """Row ``b``, heads ``HB*j .. HB*j+HB-1``, part ``s`` of the keys (program ids ``b, j, s``).

    Split 0 stores this step's keys/values at ``pos[b]`` in the layer's cache
    ``[max_batch, 2, H, L, D]`` and attends to them from registers; split ``s`` attends over
    its share of keys ``0..pos[b]-1``. With one split the result goes to ``out`` [B, C];
    otherwise each split leaves (max, denominator, weighted values) in ``part`` for
    ``attention_combine_kernel`` (flash-decoding: a short row still spreads over the GPU)."""
    b = tl.program_id(0)
    offs_h = tl.program_id(1) * HB + tl.arange(0, HB)
    split = tl.program_id(2)
    offs_d = tl.arange(0, D)
    src = qkv_ptr + b * 3 * C + offs_h[:, None] * D + offs_d[None, :]  # [HB, D]
    q = tl.load(src).to(tl.float32)
    p = tl.load(pos_ptr + b)
    keys = cache_ptr + b * stride_cb + offs_h[:, None] * stride_ch + offs_d[None, :]  # [HB, D] at position 0
    if split == 0:
        k_new = tl.load(src + C)
        v_new = tl.load(src + 2 * C)
        tl.store(keys + p * stride_cl, k_new)
        tl.store(keys + stride_ckv + p * stride_cl, v_new)
        m = tl.sum(q * k_new.to(tl.float32), axis=1) * scale  # [HB]: the newest key, from registers
        den = m * 0.0 + 1.0
        acc = v_new.to(tl.float32)
    else:
        m = tl.full((HB,), float("-inf"), tl.float32)
        den = tl.zeros((HB,), tl.float32)
        acc = tl.zeros((HB, D), tl.float32)
    share = tl.cdiv(tl.cdiv(p, SPLITS), BLOCK_L) * BLOCK_L
    lo = split * share
    hi = tl.minimum(lo + share, p)
    for start in range(lo, hi, BLOCK_L):
        offs_l = start + tl.arange(0, BLOCK_L)
        l_ok = offs_l < hi
        at = keys[None, :, :] + offs_l[:, None, None] * stride_cl  # [BLOCK_L, HB, D]
        k = tl.load(at, mask=l_ok[:, None, None], other=0.0).to(tl.float32)
        s = tl.sum(k * q[None, :, :], axis=2) * scale  # [BLOCK_L, HB]
        s = tl.where(l_ok[:, None], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=0))
        alpha = tl.exp(m - m_new)
        pr = tl.exp(s - m_new[None, :])
        v = tl.load(at + stride_ckv, mask=l_ok[:, None, None], other=0.0).to(tl.float32)
        acc = acc * alpha[:, None] + tl.sum(pr[:, :, None] * v, axis=0)
        den = den * alpha + tl.sum(pr, axis=0)
        m = m_new
    if SPLITS == 1:
        out = out_ptr + b * C + offs_h[:, None] * D + offs_d[None, :]
        tl.store(out, (acc / den[:, None]).to(out_ptr.dtype.element_ty))
    else:
        # part: [B, SPLITS, H, D + 2] float32: weighted values, then max and denominator
        row = part_ptr + ((b * SPLITS + split) * (C // D) + offs_h) * (D + 2)  # [HB]
        tl.store(row[:, None] + offs_d[None, :], acc)
        tl.store(row + D, m)
        tl.store(row + D + 1, den)


@triton.jit
def attention_combine_kernel(part_ptr, out_ptr, C: tl.constexpr, D: tl.constexpr, SPLITS: tl.constexpr):
    """Row ``b``, head ``h``: merge the splits' partial softmaxes into ``out`` [B, C]."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, SPLITS)
    offs_d = tl.arange(0, D)
    row = part_ptr + ((b * SPLITS + offs_s) * (C // D) + h) * (D + 2)  # [SPLITS]
    m = tl.load(row + D)
    den = tl.load(row + D + 1)
    acc = tl.load(row[:, None] + offs_d[None, :])
    w = tl.exp(m - tl.max(m, axis=0))  # an empty split has m = -inf: weight 0
    a = tl.sum(acc * w[:, None], axis=0) / tl.sum(den * w, axis=0)
    tl.store(out_ptr + b * C + h * D + offs_d, a.to(out_ptr.dtype.element_ty))


@triton.jit
def embed_kernel(tok_ptr, pos_ptr, emb_ptr, wpe_ptr, out_ptr, C: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[b] = speech_emb[tokens[b]] + wpe[pos[b]] (one program a row)."""
    b = tl.program_id(0)
    t = tl.load(tok_ptr + b)
    p = tl.load(pos_ptr + b)
    for c0 in range(0, C, BLOCK_C):
        offs = c0 + tl.arange(0, BLOCK_C)
        e = tl.load(emb_ptr + t * C + offs).to(tl.float32) + tl.load(wpe_ptr + p * C + offs).to(tl.float32)
        tl.store(out_ptr + b * C + offs, e.to(out_ptr.dtype.element_ty))
