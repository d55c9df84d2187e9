"""Device memory that is backed by physical memory only as far as it is used, at a fixed address.

The T3 decoder's KV cache is ``MAX_LEN`` positions for every slot, but a request uses only its
voice prompt (about 376 positions), its text and the speech made so far. A burst of 16
ten-second requests fills about 660 of 1024 positions. A plain tensor holds the whole 1536 MiB
from start-up to shutdown. This buffer reserves the whole address range once, so the CUDA
graphs captured against it stay valid, but maps physical memory (``cuMemCreate`` +
``cuMemMap``) only for the positions that requests reach, and gives it back when the decoder is
idle.

The range is ``lanes`` lanes of ``lane_bytes`` each: one lane for each layer of the cache,
positions outermost within a lane. Mapping the first ``n`` positions of every lane therefore
maps one contiguous prefix per lane. ``grow`` only adds memory, and is safe while kernels run on
memory that is already mapped. ``trim`` and ``release`` remove memory; the caller makes sure
that nothing runs on it then.

The reserved range and the driver calls are ``remappable.ReservedRange``'s; this module is CUDA only.
"""

from __future__ import annotations

import threading
from typing import Any

from voxgate_server.engines.gpu.remappable import RemapError, ReservedRange, granularity

__all__ = ["GrowableBuffer", "granularity"]


class GrowableBuffer(ReservedRange):
    """``lanes`` x ``lane_bytes`` of reserved device addresses; ``lane_bytes`` is a multiple of
    the granularity. It is exposed through ``__cuda_array_interface__`` as bytes. ``mapped_bytes``
    of each lane are backed by physical memory.

    ``release`` and ``remap`` are the parking interface that ``remappable.RemappableBuffer`` has
    too. After ``release`` the buffer refuses to grow until ``remap``, which maps nothing itself:
    the next request grows it again."""

    def __init__(self, lanes: int, lane_bytes: int, device_index: int = 0) -> None:
        gran = granularity(device_index)
        if lane_bytes % gran:
            raise ValueError(f"lane_bytes {lane_bytes} is not a multiple of the granularity {gran}")
        super().__init__(lanes * lane_bytes, device_index)
        self.lanes = lanes
        self.lane_bytes = lane_bytes
        self.mapped_bytes = 0  # of each lane
        self._released = False
        self._lock = threading.Lock()
        self.peak_bytes = 0  # the most ever mapped, all lanes together

    @property
    def mapped(self) -> bool:
        """False between a ``release`` and the ``remap`` after it (the parking interface)."""
        return not self._released

    @property
    def held_bytes(self) -> int:
        return self.mapped_bytes * self.lanes

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return self._array_interface()

    def grow(self, lane_bytes: int) -> tuple[int, int]:
        """Back at least the first ``lane_bytes`` of every lane (rounded up to the granularity).
        Returns (mapped before, mapped after) per lane. New memory is not zeroed here, because
        the caller zeroes it on its own CUDA stream, in order with its kernels."""
        with self._lock:
            if self._released:
                raise RemapError("the KV cache's memory is released (the engine is parked)")
            want = min(self.lane_bytes, -(-lane_bytes // self.granularity) * self.granularity)
            before = self.mapped_bytes
            if want <= before:
                return before, before
            self._current()
            kept = len(self._chunks)
            try:
                for lane in range(self.lanes):
                    self._map_chunk(self.ptr + lane * self.lane_bytes + before, want - before)
            except RemapError:
                self._unmap_chunks(keep=kept)  # all lanes grow, or none
                raise
            self.mapped_bytes = want
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            return before, want

    def trim(self) -> int:
        """Give back all mapped memory; returns the bytes given back. The caller has made sure
        that no kernel still reads or writes it (the decoder is idle and its stream synchronized)."""
        with self._lock:
            return self._unmap_all()

    def _unmap_all(self) -> int:
        freed = self._unmap_chunks()
        self.mapped_bytes = 0
        return freed

    def release(self) -> int:
        """For a park: give everything back and refuse to grow until ``remap``."""
        with self._lock:
            freed = self._unmap_all()
            self._released = True
            return freed

    def remap(self) -> None:
        """After a wake: growing is allowed again (the next request maps what it needs)."""
        with self._lock:
            self._released = False
