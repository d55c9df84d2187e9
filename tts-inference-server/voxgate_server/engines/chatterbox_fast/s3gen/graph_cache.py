"""Fixed-shape calls captured once as CUDA graphs and replayed, for the S3Gen worker's stages.

A graph replays the kernels its capture recorded, on the tensors the capture used: callers keep
static input buffers per shape, fill them, replay, and copy the output out before the next
replay (the graphs of one cache share a memory pool, so one graph's replay may overwrite
another's output; caches of one thread may share a pool too). Hence one cache per thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger("voxgate.engine.chatterbox.graphs")


def bucket(n: int, step: int) -> int:
    """``n`` rounded up to a multiple of ``step`` (a width bucket: one graph serves the widths in it)."""
    return -(-n // step) * step


def pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (a batch bucket)."""
    return 1 << max(0, n - 1).bit_length()


def padded_shape(pieces: int, width: int, step: int, batch_step: int) -> tuple[int, int]:
    """(rows, width) a call of ``pieces`` pieces, the widest ``width``, is padded to as a graph:
    rows to a power of two; the width to a multiple of ``step`` for one piece (little padding: a
    first chunk's latency), of ``batch_step`` for several (fewer shapes to capture)."""
    return pow2(pieces), bucket(width, step if pieces == 1 else batch_step)


def shapes_within(step: int, batch_step: int, low: int, high: int, max_rows: int, per_row: int,
                  budget: int | None) -> list[tuple[int, int]]:
    """Every (rows, width) ``padded_shape`` gives for widths ``low``..``high`` and up to ``max_rows``
    rows, a call of several rows only within ``budget`` (rows x width x ``per_row`` frames). Largest
    first: graphs captured into one memory pool in that order reuse the blocks the larger ones freed
    instead of reserving more."""
    shapes = [(1, w) for w in range(bucket(low, step), bucket(high, step) + 1, step)]
    rows = 2
    while rows <= max_rows:
        shapes += [(rows, w) for w in range(bucket(low, batch_step), bucket(high, batch_step) + 1, batch_step)
                   if budget is None or rows * w * per_row <= budget]
        rows *= 2
    return sorted(shapes, key=lambda s: (s[0] * s[1], s[0]), reverse=True)


def first_needed(shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``shapes`` in the order a capture running beside live traffic should take them: one-piece
    shapes first, narrowest first (a stream's first chunk is its narrowest piece, and a lone
    request runs one piece at a time), then the batched ones largest first (``shapes_within``'s
    pool-friendly order)."""
    singles = sorted((s for s in shapes if s[0] == 1), key=lambda s: s[1])
    batched = [s for s in shapes if s[0] != 1]
    return singles + batched


@dataclass
class Captured:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: Any  # the static input buffers the caller fills before each replay
    out: Any  # the output tensors the replay rewrites


class GraphCache:
    def __init__(self, device: torch.device, pool: Any = None) -> None:
        """``pool``: a ``torch.cuda.graph_pool_handle()`` shared with other caches whose graphs
        never run at the same time as these (None: this cache's own)."""
        self.device = device
        self._graphs: dict[Hashable, Captured] = {}
        self._pool: Any = pool
        self._thread = threading.get_ident()
        self.captures = 0
        self.broken: str | None = None  # why capturing failed; callers then run eagerly

    def __len__(self) -> int:
        return len(self._graphs)

    def get(self, key: Hashable) -> Captured | None:
        assert self._thread == threading.get_ident(), "a GraphCache belongs to one thread"
        return self._graphs.get(key)

    def get_or_capture(self, key: Hashable, make_inputs: Callable[[], Any], fn: Callable[[Any], Any],
                       context: Callable[[], AbstractContextManager] = nullcontext,
                       capture: bool = True) -> Captured | None:
        """The graph for ``key``, captured now if need be (``capture``; else None when it is not
        captured yet); None once a capture has failed (a driver or an op that cannot be captured
        fails every time: the caller runs eagerly)."""
        entry = self.get(key)
        if entry is None and capture and self.broken is None:
            try:
                entry = self.capture(key, make_inputs(), fn, context)
            except Exception as exc:  # noqa: BLE001 - logged once, then eager for good
                self.broken = repr(exc)[:300]
                log.warning("CUDA graph capture failed, running eagerly from now on: %s", self.broken)
        return entry

    def capture(self, key: Hashable, inputs: Any, fn: Callable[[Any], Any],
                context: Callable[[], AbstractContextManager] = nullcontext) -> Captured:
        """Run ``fn(inputs)`` once eagerly (warm-up), then capture it on this thread's stream (a side
        stream when that is the default one, where capture is not allowed)."""
        with context():
            fn(inputs)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.current_stream(self.device)
        if stream == torch.cuda.default_stream(self.device):
            stream = torch.cuda.Stream(self.device)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the T3 decoder's thread keeps launching (and syncing) during a capture
        with torch.cuda.graph(graph, pool=self._pool, stream=stream, capture_error_mode="thread_local"), context():
            out = fn(inputs)
        entry = Captured(graph, inputs, out)
        self._graphs[key] = entry
        self.captures += 1
        return entry
