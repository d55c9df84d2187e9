"""Device memory whose physical pages can be given back and re-made at the same address.

Parking through the CUDA checkpoint API (``cuda_checkpoint``) copies every byte the process holds
to host memory and back, at about 1.8 GB/s on an H200, so a park costs time in proportion to the
bytes held. Some of those bytes are worthless between requests: the T3 decoder's KV cache (about
2.3 GB at the default profile) is rewritten by every request before it is read. Memory from
PyTorch's allocator cannot be dropped without freeing its address, and the captured CUDA graphs
hold that address. So the KV cache lives in memory made through CUDA's virtual memory API (as
vLLM's sleep mode does): ``cuMemAddressReserve`` keeps a virtual address range for the buffer's
whole life, ``cuMemCreate`` + ``cuMemMap`` + ``cuMemSetAccess`` back it with physical memory, and
``release`` unmaps and frees the physical memory while the reservation stays; ``remap`` backs the
same range again (zeroed), so every graph that points into it stays valid. The checkpoint then
has ~2.3 GB less to copy each way.

Driver calls through ctypes on libcuda (no new dependency), as ``cuda_checkpoint`` does. CUDA only:
``remappable_zeros`` gives a plain ``torch.zeros`` tensor on any other device, where the driver
lacks the calls, or with ``VOXGATE_KV_REMAPPABLE=0``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from typing import Any

from voxgate_server.engines.gpu.cuda_checkpoint import CheckpointError, load_libcuda

log = logging.getLogger("voxgate.engine.gpu.remappable")

REQUIRED_SYMBOLS = ("cuMemAddressReserve", "cuMemAddressFree", "cuMemCreate", "cuMemRelease", "cuMemMap",
                    "cuMemUnmap", "cuMemSetAccess", "cuMemGetAllocationGranularity", "cuMemsetD8_v2",
                    "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease", "cuCtxSetCurrent",
                    "cuCtxSynchronize", "cuDeviceGet")

_CU_MEM_ALLOCATION_TYPE_PINNED = 1
_CU_MEM_LOCATION_TYPE_DEVICE = 1
_CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3
_CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1


class RemapError(CheckpointError):
    """A virtual-memory driver call failed; the message names the call and CUDA's error name."""


class _Location(ctypes.Structure):
    # CUmemLocation: type, id
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class _AllocFlags(ctypes.Structure):
    _fields_ = [("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte),
                ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4)]


class _AllocationProp(ctypes.Structure):
    # CUmemAllocationProp (cuda.h): 32 bytes on 64-bit Linux
    _fields_ = [("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", _Location),
                ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", _AllocFlags)]


class _AccessDesc(ctypes.Structure):
    # CUmemAccessDesc: location, flags (12 bytes)
    _fields_ = [("location", _Location), ("flags", ctypes.c_int)]


_u64, _size = ctypes.c_uint64, ctypes.c_size_t
_SIGNATURES: dict[str, list[Any]] = {
    "cuMemAddressReserve": [ctypes.POINTER(_u64), _size, _size, _u64, _u64],
    "cuMemAddressFree": [_u64, _size],
    "cuMemCreate": [ctypes.POINTER(_u64), _size, ctypes.POINTER(_AllocationProp), _u64],
    "cuMemRelease": [_u64],
    "cuMemMap": [_u64, _size, _size, _u64, _u64],
    "cuMemUnmap": [_u64, _size],
    "cuMemSetAccess": [_u64, _size, ctypes.POINTER(_AccessDesc), _size],
    "cuMemGetAllocationGranularity": [ctypes.POINTER(_size), ctypes.POINTER(_AllocationProp), ctypes.c_int],
    "cuMemsetD8_v2": [_u64, ctypes.c_ubyte, _size],
    "cuDevicePrimaryCtxRetain": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int],
    "cuDevicePrimaryCtxRelease": [ctypes.c_int],
    "cuCtxSetCurrent": [ctypes.c_void_p],
    "cuCtxSynchronize": [],
    "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
}

_driver: Any = None
_driver_lock = threading.Lock()


def _lib() -> Any:
    """libcuda with the calls' argument types set (a CUdeviceptr must not pass as a C int)."""
    global _driver
    with _driver_lock:
        if _driver is None:
            lib = load_libcuda()
            missing = [s for s in REQUIRED_SYMBOLS if not hasattr(lib, s)]
            if missing:
                raise RemapError(f"the CUDA driver lacks {missing[0]}")
            for name, argtypes in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = argtypes, ctypes.c_int
            _check(lib, lib.cuInit(0), "cuInit")
            _driver = lib
        return _driver


def _check(lib: Any, rc: int, what: str) -> None:
    if rc == 0:
        return
    name = ctypes.c_char_p()
    try:
        lib.cuGetErrorName(rc, ctypes.byref(name))
    except AttributeError:
        pass
    raise RemapError(f"{what} failed: {(name.value or b'').decode() or 'CUDA error'} ({rc})")


def enabled() -> bool:
    return os.environ.get("VOXGATE_KV_REMAPPABLE", "1").lower() not in ("0", "false", "no", "off")


def granularity(device_index: int = 0) -> int:
    """The driver's recommended mapping granularity on this device (2 MiB on current GPUs)."""
    lib = _lib()
    dev = ctypes.c_int()
    _check(lib, lib.cuDeviceGet(ctypes.byref(dev), device_index), "cuDeviceGet")
    gran = ctypes.c_size_t()
    _check(lib, lib.cuMemGetAllocationGranularity(ctypes.byref(gran), ctypes.byref(_device_prop(dev.value)),
                                                  _CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), "cuMemGetAllocationGranularity")
    return gran.value


def _device_prop(dev: int) -> _AllocationProp:
    return _AllocationProp(type=_CU_MEM_ALLOCATION_TYPE_PINNED, location=_Location(_CU_MEM_LOCATION_TYPE_DEVICE, dev))


class ReservedRange:
    """A range of device virtual addresses kept for the object's whole life, into which physical
    memory is mapped in chunks and unmapped again. The address never changes, so CUDA graphs
    captured against it stay valid whatever is mapped. ``RemappableBuffer`` maps the whole range
    as one chunk; ``growable.GrowableBuffer`` maps per-lane prefixes as requests reach them."""

    def __init__(self, nbytes: int, device_index: int = 0) -> None:
        self.lib = _lib()
        self.ptr = 0
        self.device_index = device_index
        dev = ctypes.c_int()
        self._call(self.lib.cuDeviceGet(ctypes.byref(dev), device_index), "cuDeviceGet")
        self._dev = dev.value
        self._ctx = ctypes.c_void_p()
        self._call(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self._ctx), self._dev), "cuDevicePrimaryCtxRetain")
        self._prop = _device_prop(self._dev)
        self._access = _AccessDesc(location=_Location(_CU_MEM_LOCATION_TYPE_DEVICE, self._dev),
                                   flags=_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        self.granularity = granularity(device_index)
        self.size = -(-nbytes // self.granularity) * self.granularity
        self._chunks: list[tuple[int, int, int]] = []  # (address, bytes, handle), in mapping order
        ptr = _u64()
        self._current()
        try:
            self._call(self.lib.cuMemAddressReserve(ctypes.byref(ptr), self.size, self.granularity, 0, 0),
                       "cuMemAddressReserve")
        except RemapError:
            self.lib.cuDevicePrimaryCtxRelease(self._dev)
            raise
        self.ptr = ptr.value

    def _call(self, rc: int, what: str) -> None:
        _check(self.lib, rc, what)

    def _current(self) -> None:
        # the caller's thread may never have used CUDA (a server worker thread): bind it to the
        # device's primary context, the one PyTorch uses
        self._call(self.lib.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    def _array_interface(self) -> dict[str, Any]:
        return {"shape": (self.size,), "typestr": "|u1", "data": (self.ptr, False), "version": 3, "strides": None}

    def _map_chunk(self, addr: int, nbytes: int) -> None:
        """Back ``[addr, addr + nbytes)`` with new physical memory, readable and writable from this
        device (not zeroed). On failure nothing of it stays mapped or allocated."""
        handle = _u64()
        self._call(self.lib.cuMemCreate(ctypes.byref(handle), nbytes, ctypes.byref(self._prop), 0), "cuMemCreate")
        try:
            self._map(addr, nbytes, handle.value)
            try:
                self._call(self.lib.cuMemSetAccess(addr, nbytes, ctypes.byref(self._access), 1), "cuMemSetAccess")
            except RemapError:
                self.lib.cuMemUnmap(addr, nbytes)
                raise
        except RemapError:
            self.lib.cuMemRelease(handle.value)
            raise
        self._chunks.append((addr, nbytes, handle.value))

    def _map(self, addr: int, nbytes: int, handle: int) -> None:
        rc = self.lib.cuMemMap(addr, nbytes, 0, handle, 0)
        if rc == 0:
            return
        if not self._chunks:
            # a driver that did not keep the reservation across a checkpoint/restore: take the
            # same range again if it is free (graphs hold this address; any other would not do)
            again = _u64()
            if self.lib.cuMemAddressReserve(ctypes.byref(again), self.size, self.granularity, self.ptr, 0) == 0:
                if again.value == self.ptr and self.lib.cuMemMap(addr, nbytes, 0, handle, 0) == 0:
                    log.warning("the reservation at %#x was gone after restore; reserved it again", self.ptr)
                    return
                if again.value != self.ptr:
                    self.lib.cuMemAddressFree(again.value, self.size)
        self._call(rc, f"cuMemMap at {addr:#x}")

    def _unmap_chunks(self, keep: int = 0) -> int:
        """Unmap and free every chunk mapped after the first ``keep``, newest first; returns the
        bytes given back. The caller makes sure no kernel still uses them."""
        freed = 0
        if len(self._chunks) > keep:
            self._current()
        while len(self._chunks) > keep:
            addr, nbytes, handle = self._chunks.pop()
            self._call(self.lib.cuMemUnmap(addr, nbytes), "cuMemUnmap")
            self._call(self.lib.cuMemRelease(handle), "cuMemRelease")
            freed += nbytes
        return freed

    def release(self) -> int:
        """Unmap and free all physical memory; the address range stays reserved. Returns the
        bytes given back (0 when nothing is mapped). The caller has synchronized the device."""
        return self._unmap_chunks()

    def close(self) -> None:
        if self.ptr == 0:
            return
        try:
            self.release()
        finally:
            self.lib.cuMemAddressFree(self.ptr, self.size)
            self.ptr = 0
            self.lib.cuDevicePrimaryCtxRelease(self._dev)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit the driver may be gone
            pass


class RemappableBuffer(ReservedRange):
    """``nbytes`` (rounded up to the allocation granularity) of device memory at a fixed virtual
    address, exposed through ``__cuda_array_interface__`` as bytes. ``release`` gives the physical
    memory back; ``remap`` makes it again at the same address, zeroed. Not thread-safe: the
    engine calls these with nothing running on the GPU."""

    def __init__(self, nbytes: int, device_index: int = 0) -> None:
        super().__init__(nbytes, device_index)
        self.nbytes = nbytes
        try:
            self.remap()
        except RemapError:
            self.close()
            raise

    @property
    def mapped(self) -> bool:
        return bool(self._chunks)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        if not self.mapped:
            raise RemapError("the buffer's memory is released")
        return self._array_interface()

    def remap(self) -> None:
        """Back the reserved range with new physical memory and zero it (what the engine reads
        before a request writes is zeros, never the last tenant's bytes or garbage). A no-op when
        it is mapped."""
        if self.mapped:
            return
        self._current()
        self._map_chunk(self.ptr, self.size)
        try:
            self._call(self.lib.cuMemsetD8_v2(self.ptr, 0, self.size), "cuMemsetD8")
            self._call(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")
        except RemapError:
            self._unmap_chunks()
            raise


def remappable_zeros(shape: tuple[int, ...], dtype: Any, device: Any) -> tuple[Any, RemappableBuffer | None]:
    """A zeroed tensor of ``shape`` and ``dtype`` on ``device`` and, on CUDA, the buffer behind it
    (None when the tensor is a plain one). The tensor keeps the buffer alive; the caller keeps
    the buffer to ``release``/``remap`` it."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not enabled():
        return torch.zeros(shape, dtype=dtype, device=device), None
    index = device.index if device.index is not None else torch.cuda.current_device()
    nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    try:
        buf = RemappableBuffer(nbytes, index)
    except CheckpointError as exc:  # no libcuda, or calls missing or refused
        log.warning("remappable device memory unavailable (%s): a plain tensor, copied on park", exc)
        return torch.zeros(shape, dtype=dtype, device=device), None
    # bytes, then the real type: the array interface has no bfloat16
    raw = torch.as_tensor(buf, device=device)
    return raw[:nbytes].view(dtype).view(shape), buf
