"""The S3Gen graph cache's decisions that hold on any device: which shapes a background capture
takes first, and that a caller who must not capture gets no graph (and runs eagerly)."""

from __future__ import annotations

import torch

from voxgate_server.engines.chatterbox_fast.s3gen.graph_cache import GraphCache, first_needed, shapes_within


def test_background_capture_takes_one_piece_shapes_first_narrowest_first() -> None:
    shapes = shapes_within(8, 32, 20, 200, 16, 2, 4000)
    ordered = first_needed(shapes)
    assert sorted(ordered) == sorted(shapes)  # the same shapes, nothing dropped or added
    singles = [s for s in ordered if s[0] == 1]
    assert ordered[:len(singles)] == singles and len(singles) > 3
    assert [w for _, w in singles] == sorted(w for _, w in singles)
    batched = ordered[len(singles):]
    sizes = [r * w for r, w in batched]
    assert sizes == sorted(sizes, reverse=True) and batched  # the pool-friendly order stays


def test_a_cache_told_not_to_capture_returns_nothing_and_records_nothing() -> None:
    cache = GraphCache(torch.device("cpu"))
    made: list[int] = []

    def make_inputs() -> torch.Tensor:
        made.append(1)
        return torch.zeros(2)

    assert cache.get_or_capture(("k", 1), make_inputs, lambda x: x + 1, capture=False) is None
    assert made == [] and len(cache) == 0 and cache.captures == 0 and cache.broken is None
