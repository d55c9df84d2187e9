"""S3Gen without host round-trips that change nothing.

Under ``torch.cuda.set_sync_debug_mode`` (``bench/knobs/gpu_knobs_bench.py --sections syncs``, H200)
one flow call synchronised with the host 35 times: 30 of them in ``add_optional_chunk_mask``,
which after building each attention mask asks the GPU (``.item()``) whether any row hides every
key, only to then set such rows visible. Each round-trip drains the launch queue, so the host
cannot run ahead of the GPU and a ~28 ms flow call took ~80 ms. The same masks are computed
here without asking (rows with no visible key are made visible by a tensor operation), and
HiFT's STFT window is moved to the GPU once instead of being copied there on every call. Same
values, same model: ``tests/chatterbox/test_fast_turbo.py`` checks the flow's output is identical.
"""

from __future__ import annotations

from typing import Any

import torch

_installed = False


def add_optional_chunk_mask(xs: torch.Tensor, masks: torch.Tensor, use_dynamic_chunk: bool,
                            use_dynamic_left_chunk: bool, decoding_chunk_size: int, static_chunk_size: int,
                            num_decoding_left_chunks: int, enable_full_context: bool = True) -> torch.Tensor:
    """Upstream's ``utils.mask.add_optional_chunk_mask`` for inference, with no host sync."""
    from chatterbox.models.s3gen.utils import mask as upstream

    if use_dynamic_chunk:  # random chunk sizes are for training: upstream's own function
        return upstream.add_optional_chunk_mask(xs, masks, use_dynamic_chunk, use_dynamic_left_chunk,
                                                decoding_chunk_size, static_chunk_size,
                                                num_decoding_left_chunks, enable_full_context)
    if static_chunk_size > 0:
        chunk = upstream.subsequent_chunk_mask(xs.size(1), static_chunk_size, num_decoding_left_chunks, xs.device)
        chunk_masks = masks & chunk.unsqueeze(0)
    else:
        chunk_masks = masks
    assert chunk_masks.dtype == torch.bool
    return chunk_masks | (chunk_masks.sum(dim=-1, keepdim=True) == 0)


def install(s3gen: Any) -> None:
    """Use the sync-free mask in S3Gen's encoder and estimator (process-wide, idempotent) and keep
    this S3Gen's HiFT window on its device."""
    global _installed
    if not _installed:
        from chatterbox.models.s3gen import decoder
        from chatterbox.models.s3gen.transformer import upsample_encoder

        for module in (decoder, upsample_encoder):
            module.add_optional_chunk_mask = add_optional_chunk_mask
        _installed = True
    hift = getattr(s3gen, "mel2wav", None)
    window = getattr(hift, "stft_window", None)
    if isinstance(window, torch.Tensor):
        hift.stft_window = window.to(s3gen.device)
