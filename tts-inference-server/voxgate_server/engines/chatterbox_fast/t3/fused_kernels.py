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
def linear_kernel(x_ptr, w_ptr, b_ptr, out_ptr, lnw_ptr, lnb_ptr, part_ptr, lock_ptr, B, N, stride_wn, stride_wk,
                  eps, K: tl.constexpr, LN: tl.constexpr, GELU: tl.constexpr, RESIDUAL: tl.constexpr,
                  IEEE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  SPLIT_K: tl.constexpr, PDL: tl.constexpr):
    """out[b, n] (+)= act(LN(x)[b] . W[n] + bias[n]); x [B, K] and out [B, N] contiguous.

    Program ``(n, b, s)`` covers ``BLOCK_N`` outputs of ``BLOCK_B`` rows over the ``s``-th of
    ``SPLIT_K`` slices of K. At one row a matrix is a few MB read by only N / BLOCK_N programs,
    fewer than the GPU has SMs, so K is split to spread the reading. With ``SPLIT_K > 1`` each
    program leaves its float32 partial sum in ``part`` [SPLIT_K, B, N] and counts itself in
    ``lock`` (one int32 per (n, b) tile, zero between calls); the last of a tile to arrive adds
    the partials in split order (the same sum whatever order they finished in) and applies the
    epilogue, then sets the count back to zero. No second launch, and deterministic.

    ``PDL`` (Hopper's programmatic dependent launch; the share of K must be one ``BLOCK_K``): the
    program reads its weights before waiting for the previous kernel to finish, since no kernel
    of the step writes them, so the step's weight reads overlap the chain of small kernels."""
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    b_ok = offs_b < B
    n_ok = offs_n < N
    k_share: tl.constexpr = K // SPLIT_K
    if PDL:
        offs_kw = pid_k * k_share + tl.arange(0, BLOCK_K)
        w_early = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_kw[None, :] * stride_wk, mask=n_ok[:, None],
                          other=0.0)
        tl.extra.cuda.gdc_wait()  # the previous kernel's outputs (x, out) are complete from here
        tl.extra.cuda.gdc_launch_dependents()  # the next kernel may start reading its weights
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
    for k0 in range(pid_k * k_share, (pid_k + 1) * k_share, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        xv = tl.load(x_ptr + offs_b[:, None] * K + offs_k[None, :], mask=b_ok[:, None], other=0.0)
        if LN:
            g = tl.load(lnw_ptr + offs_k).to(tl.float32)
            beta = tl.load(lnb_ptr + offs_k).to(tl.float32)
            xn = (xv.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]
            xv = xn.to(w_ptr.dtype.element_ty)  # what F.layer_norm hands the next matmul
        if PDL:
            w = w_early  # one iteration: the share of K is one block
        else:
            w = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :] * stride_wk, mask=n_ok[:, None],
                        other=0.0)
        if IEEE:
            acc += tl.dot(xv, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(xv, tl.trans(w))
    ok = b_ok[:, None] & n_ok[None, :]
    if SPLIT_K == 1:
        _linear_epilogue(acc, b_ptr, out_ptr, offs_b, offs_n, n_ok, ok, N, GELU, RESIDUAL)
    else:
        part = part_ptr + offs_b[:, None] * N + offs_n[None, :]  # split 0's slice
        tl.store(part + pid_k * B * N, acc, mask=ok)
        tl.debug_barrier()  # every thread's partial is written before the count says so
        lock = lock_ptr + pid_b * tl.num_programs(0) + pid_n
        if tl.atomic_add(lock, 1, sem="acq_rel") == SPLIT_K - 1:
            total = tl.zeros((BLOCK_B, BLOCK_N), tl.float32)
            for s in tl.static_range(SPLIT_K):  # .cg: from L2, where the other SMs wrote them
                total += tl.load(part + s * B * N, mask=ok, other=0.0, cache_modifier=".cg")
            _linear_epilogue(total, b_ptr, out_ptr, offs_b, offs_n, n_ok, ok, N, GELU, RESIDUAL)
            tl.atomic_xchg(lock, 0)


@triton.jit
def _linear_epilogue(acc, b_ptr, out_ptr, offs_b, offs_n, n_ok, ok, N, GELU: tl.constexpr, RESIDUAL: tl.constexpr):
    y = acc + tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if GELU:
        y = _gelu_tanh(y)
    out = out_ptr + offs_b[:, None] * N + offs_n[None, :]
    if RESIDUAL:
        y += tl.load(out, mask=ok, other=0.0).to(tl.float32)
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def attention_kernel(qkv_ptr, cache_ptr, pos_ptr, out_ptr, part_ptr, scale, stride_cb, stride_ckv, stride_ch,
                     stride_cl, C: tl.constexpr, D: tl.constexpr, HB: tl.constexpr, SPLITS: tl.constexpr,
                     BLOCK_L: tl.constexpr, PDL: tl.constexpr):
    """Row ``b``, heads ``HB*j .. HB*j+HB-1``, part ``s`` of the keys (program ids ``b, j, s``).

    Split 0 stores this step's keys/values at ``pos[b]`` in the layer's cache (any layout, given
    by its strides: row, key/value, head, position; ``head_dim`` contiguous) and attends to them from registers; split ``s`` attends over
    its share of keys ``0..pos[b]-1``. With one split the result goes to ``out`` [B, C];
    otherwise each split leaves (max, denominator, weighted values) in ``part`` for
    ``attention_combine_kernel`` (flash-decoding: a short row still spreads over the GPU)."""
    b = tl.program_id(0)
    offs_h = tl.program_id(1) * HB + tl.arange(0, HB)
    split = tl.program_id(2)
    offs_d = tl.arange(0, D)
    # positions and the cached keys before them were written by earlier steps, not by a kernel
    # of this one: the share's first block is read before waiting for the QKV kernel
    p = tl.load(pos_ptr + b)
    keys = cache_ptr + b * stride_cb + offs_h[:, None] * stride_ch + offs_d[None, :]  # [HB, D] at position 0
    share = tl.cdiv(tl.cdiv(p, SPLITS), BLOCK_L) * BLOCK_L
    lo = split * share
    hi = tl.minimum(lo + share, p)
    offs_l = lo + tl.arange(0, BLOCK_L)
    l_ok = offs_l < hi
    at = keys[None, :, :] + offs_l[:, None, None] * stride_cl  # [BLOCK_L, HB, D]
    k_first = tl.load(at, mask=l_ok[:, None, None], other=0.0)
    v_first = tl.load(at + stride_ckv, mask=l_ok[:, None, None], other=0.0)
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    src = qkv_ptr + b * 3 * C + offs_h[:, None] * D + offs_d[None, :]  # [HB, D]
    q = tl.load(src).to(tl.float32)
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
    if lo < hi:  # an empty share (a short row) keeps its -inf max
        m, den, acc = _attend_block(q, k_first, v_first, l_ok, m, den, acc, scale)
    for start in range(lo + BLOCK_L, hi, BLOCK_L):
        offs_l = start + tl.arange(0, BLOCK_L)
        l_ok = offs_l < hi
        at = keys[None, :, :] + offs_l[:, None, None] * stride_cl
        k = tl.load(at, mask=l_ok[:, None, None], other=0.0)
        v = tl.load(at + stride_ckv, mask=l_ok[:, None, None], other=0.0)
        m, den, acc = _attend_block(q, k, v, l_ok, m, den, acc, scale)
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
def _attend_block(q, k, v, l_ok, m, den, acc, scale):
    """Online softmax over one block of keys ``k`` / values ``v`` [BLOCK_L, HB, D]."""
    s = tl.sum(k.to(tl.float32) * q[None, :, :], axis=2) * scale  # [BLOCK_L, HB]
    s = tl.where(l_ok[:, None], s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, axis=0))
    alpha = tl.exp(m - m_new)
    pr = tl.exp(s - m_new[None, :])
    acc = acc * alpha[:, None] + tl.sum(pr[:, :, None] * v.to(tl.float32), axis=0)
    den = den * alpha + tl.sum(pr, axis=0)
    return m_new, den, acc


@triton.jit
def attention_combine_kernel(part_ptr, out_ptr, C: tl.constexpr, D: tl.constexpr, SPLITS: tl.constexpr,
                             PDL: tl.constexpr):
    """Row ``b``, head ``h``: merge the splits' partial softmaxes into ``out`` [B, C]."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
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
def embed_kernel(tok_ptr, pos_ptr, emb_ptr, wpe_ptr, out_ptr, C: tl.constexpr, BLOCK_C: tl.constexpr,
                 PDL: tl.constexpr):
    """out[b] = speech_emb[tokens[b]] + wpe[pos[b]] (one program a row)."""
    b = tl.program_id(0)
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
    t = tl.load(tok_ptr + b)
    p = tl.load(pos_ptr + b)
    for c0 in range(0, C, BLOCK_C):
        offs = c0 + tl.arange(0, BLOCK_C)
        e = tl.load(emb_ptr + t * C + offs).to(tl.float32) + tl.load(wpe_ptr + p * C + offs).to(tl.float32)
        tl.store(out_ptr + b * C + offs, e.to(out_ptr.dtype.element_ty))
