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

The driver calls go through ``remappable``'s ctypes bindings; this module is CUDA only.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from voxgate_server.engines.gpu.remappable import (_AccessDesc, _AllocationProp, _CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
                                                   _CU_MEM_ALLOC_GRANULARITY_RECOMMENDED,
                                                   _CU_MEM_ALLOCATION_TYPE_PINNED, _CU_MEM_LOCATION_TYPE_DEVICE,
                                                   _Location, _check, _lib, _u64, RemapError)


def granularity(device_index: int = 0) -> int:
    """The driver's recommended mapping granularity on this device (2 MiB on current GPUs)."""
    lib = _lib()
    dev = ctypes.c_int()
    _check(lib, lib.cuDeviceGet(ctypes.byref(dev), device_index), "cuDeviceGet")
    prop = _AllocationProp(type=_CU_MEM_ALLOCATION_TYPE_PINNED, location=_Location(_CU_MEM_LOCATION_TYPE_DEVICE, dev.value))
    gran = ctypes.c_size_t()
    _check(lib, lib.cuMemGetAllocationGranularity(ctypes.byref(gran), ctypes.byref(prop),
                                                  _CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), "cuMemGetAllocationGranularity")
    return gran.value


class GrowableBuffer:
    """``lanes`` x ``lane_bytes`` of reserved device addresses; ``lane_bytes`` is a multiple of
    the granularity. It is exposed through ``__cuda_array_interface__`` as bytes. ``mapped_bytes``
    of each lane are backed by physical memory.

    ``release`` and ``remap`` are the parking interface that ``remappable.RemappableBuffer`` has
    too. After ``release`` the buffer refuses to grow until ``remap``, which maps nothing itself:
    the next request grows it again."""

    def __init__(self, lanes: int, lane_bytes: int, device_index: int = 0) -> None:
        self.lib = _lib()
        dev = ctypes.c_int()
        self._call(self.lib.cuDeviceGet(ctypes.byref(dev), device_index), "cuDeviceGet")
        self._dev = dev.value
        self._ctx = ctypes.c_void_p()
        self._call(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self._ctx), self._dev), "cuDevicePrimaryCtxRetain")
        self._prop = _AllocationProp(type=_CU_MEM_ALLOCATION_TYPE_PINNED,
                                     location=_Location(_CU_MEM_LOCATION_TYPE_DEVICE, self._dev))
        self._access = _AccessDesc(location=_Location(_CU_MEM_LOCATION_TYPE_DEVICE, self._dev),
                                   flags=_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        self.granularity = granularity(device_index)
        if lane_bytes % self.granularity:
            raise ValueError(f"lane_bytes {lane_bytes} is not a multiple of the granularity {self.granularity}")
        self.lanes = lanes
        self.lane_bytes = lane_bytes
        self.size = lanes * lane_bytes
        ptr = _u64()
        self._current()
        self._call(self.lib.cuMemAddressReserve(ctypes.byref(ptr), self.size, self.granularity, 0, 0),
                   "cuMemAddressReserve")
        self.ptr = ptr.value
        self.mapped_bytes = 0  # of each lane
        self._chunks: list[tuple[int, int, int]] = []  # (address, bytes, handle), in mapping order
        self._released = False
        self._lock = threading.Lock()
        self.peak_bytes = 0  # the most ever mapped, all lanes together

    def _call(self, rc: int, what: str) -> None:
        _check(self.lib, rc, what)

    def _current(self) -> None:
        self._call(self.lib.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    @property
    def mapped(self) -> bool:
        """False between a ``release`` and the ``remap`` after it (the parking interface)."""
        return not self._released

    @property
    def held_bytes(self) -> int:
        return self.mapped_bytes * self.lanes

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": (self.size,), "typestr": "|u1", "data": (self.ptr, False), "version": 3, "strides": None}

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
            step = want - before
            done: list[tuple[int, int, int]] = []
            try:
                for lane in range(self.lanes):
                    addr = self.ptr + lane * self.lane_bytes + before
                    done.append(self._map_chunk(addr, step))
            except RemapError:
                for addr, nbytes, handle in done:
                    self.lib.cuMemUnmap(addr, nbytes)
                    self.lib.cuMemRelease(handle)
                raise
            self._chunks.extend(done)
            self.mapped_bytes = want
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
            return before, want

    def _map_chunk(self, addr: int, nbytes: int) -> tuple[int, int, int]:
        handle = _u64()
        self._call(self.lib.cuMemCreate(ctypes.byref(handle), nbytes, ctypes.byref(self._prop), 0), "cuMemCreate")
        try:
            self._call(self.lib.cuMemMap(addr, nbytes, 0, handle.value, 0), f"cuMemMap at {addr:#x}")
            try:
                self._call(self.lib.cuMemSetAccess(addr, nbytes, ctypes.byref(self._access), 1), "cuMemSetAccess")
            except RemapError:
                self.lib.cuMemUnmap(addr, nbytes)
                raise
        except RemapError:
            self.lib.cuMemRelease(handle.value)
            raise
        return addr, nbytes, handle.value

    def trim(self) -> int:
        """Give back all mapped memory; returns the bytes given back. The caller has made sure
        that no kernel still reads or writes it (the decoder is idle and its stream synchronized)."""
        with self._lock:
            return self._unmap_all()

    def _unmap_all(self) -> int:
        freed = 0
        if self._chunks:
            self._current()
        while self._chunks:
            addr, nbytes, handle = self._chunks.pop()
            self._call(self.lib.cuMemUnmap(addr, nbytes), "cuMemUnmap")
            self._call(self.lib.cuMemRelease(handle), "cuMemRelease")
            freed += nbytes
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

    def close(self) -> None:
        if self.ptr == 0:
            return
        try:
            with self._lock:
                self._unmap_all()
        finally:
            self.lib.cuMemAddressFree(self.ptr, self.size)
            self.ptr = 0
            self.lib.cuDevicePrimaryCtxRelease(self._dev)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the driver may be gone
            pass
