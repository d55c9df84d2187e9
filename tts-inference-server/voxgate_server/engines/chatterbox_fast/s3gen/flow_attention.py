"""The flow estimator's self-attention on tensor cores: Q, K and V in half precision.

S3Gen's meanflow estimator has 56 transformer blocks whose attention runs over the whole piece,
the voice's 500-frame prompt included. Upstream runs it through diffusers' ``AttnProcessor2_0``
in float32, which ``scaled_dot_product_attention`` can only give to its float32 kernel (no tensor
cores); with 16 pieces batched that is most of a flow call (``bench/knobs/gpu_knobs_bench.py
--sections flowprof``). TF32, which S3Gen's matmuls and convolutions already use on the GPU
(``FastTurbo(tf32=True)``, PyTorch's cuDNN default), keeps 10 bits of mantissa; float16 keeps the
same 10 bits, and the attention kernels accumulate and take the softmax in float32. So with Q, K
and V in float16 the attention rounds its inputs as the matmuls around it already do. The
projections and everything else stay as they are.

The estimator's mask is ``mask_to_bias``'s additive bias (0 for a key to attend, -1e10 for a
padded one), whose ``exp`` is exactly zero in float32: it is passed as the equivalent boolean
mask, which half precision can hold.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}  # fp32: upstream's processor


def dtype_for(name: str) -> torch.dtype | None:
    """The Q, K, V dtype a setting names (None: upstream's float32 attention)."""
    if name not in DTYPES:
        raise ValueError(f"attention must be {', '.join(list(DTYPES)[:-1])} or {list(DTYPES)[-1]}, not {name!r}")
    return DTYPES[name]


class HalfAttention:
    """diffusers attention processor: self-attention with Q, K, V in ``dtype``, output back in the
    input's dtype. Only for the estimator's plain self-attention blocks (see ``install``)."""

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("HalfAttention is for self-attention only")
        batch, length, _ = hidden_states.shape
        heads = attn.heads
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = q.shape[-1] // heads
        q, k, v = (t.view(batch, length, heads, head_dim).transpose(1, 2).to(self.dtype) for t in (q, k, v))
        mask = None
        if attention_mask is not None:
            # [B, 1 or T, T] bias of 0 / -1e10 -> keep-mask [B, 1, 1 or T, T]
            mask = (attention_mask > -1.0).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, heads * head_dim).to(hidden_states.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _plain_self_attention(attn: Any) -> bool:
    """Whether ``attn`` is a diffusers ``Attention`` with nothing ``HalfAttention`` leaves out."""
    return (getattr(attn, "spatial_norm", None) is None and getattr(attn, "group_norm", None) is None
            and not getattr(attn, "residual_connection", False)
            and getattr(attn, "rescale_output_factor", 1.0) == 1.0
            and not getattr(attn, "is_cross_attention", False)
            and not getattr(attn, "upcast_attention", False))


def install(estimator: torch.nn.Module, dtype: torch.dtype | None) -> int:
    """Give the estimator's self-attention blocks ``HalfAttention(dtype)`` (``None``: diffusers'
    own float32 processor back). Returns how many blocks were changed."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    changed = 0
    for module in estimator.modules():
        if isinstance(module, Attention) and _plain_self_attention(module):
            module.set_processor(HalfAttention(dtype) if dtype is not None else AttnProcessor2_0())
            changed += 1
    return changed
