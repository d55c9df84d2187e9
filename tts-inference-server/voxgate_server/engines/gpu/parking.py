"""Parking for CUDA engines: free the GPU memory and keep the process. Two mechanisms:

- ``cuda-checkpoint``: the driver's checkpoint API (``cuda_checkpoint``), driven by a helper
  process. Everything moves to the host, the CUDA context too.
- ``allocator``: where the driver lacks that API, every ``cudaMalloc`` of the process goes through
  a virtual-memory allocator that can release its memory and re-make it in place
  (``sleep_memory``). The CUDA context stays.

``sleep_memory.chosen`` picks the mechanism (``VOXGATE_PARK_MECHANISM``). The chatterbox engines
use this mixin; any engine with a ``device`` attribute can mix it in."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from voxgate_server.engines.base import EngineError, ParkSupport

log = logging.getLogger("voxgate.engine.gpu.parking")
_HELPER_LOCK = threading.Lock()  # prepare_park's thread and a first park may both ask for it


class GpuParking:
    """Mixin: ``park_support``, ``prepare_park``, ``park`` and ``wake`` for an engine whose
    ``device`` is "cuda".

    ``VOXGATE_PARK_EMPTY_CACHE`` (default 1): before the checkpoint, PyTorch's cached but unused
    blocks are returned to the driver, so fewer bytes are copied each way (CUDA-graph pools and
    live tensors stay). Buffers the engine names in ``releasable_buffers`` (the KV cache) are
    not copied at all: their physical memory is given back before the checkpoint and re-made at
    the same address after the restore (``remappable``). Both mechanisms treat them this way."""

    device: str
    _checkpoint_helper: Any = None
    _sleep_memory: Any = None
    _mechanism: str | None = None
    last_park: dict[str, Any] | None = None
    last_wake: dict[str, Any] | None = None

    def park_support(self) -> ParkSupport:
        if self.device != "cuda":
            return ParkSupport(False, reason=f"runs on {self.device}: no GPU memory to give back")
        from voxgate_server.engines.gpu import sleep_memory

        if sleep_memory.active():
            self._mechanism = "allocator"
            return ParkSupport(True, mechanism="allocator")
        mechanism, why = sleep_memory.chosen()
        if mechanism == "allocator":  # chosen, but this process was not started through voxgate-server
            return ParkSupport(False, reason="the allocator mechanism needs the server started as voxgate-server "
                                             "(it re-executes itself with the allocator preloaded)")
        self._mechanism = mechanism if mechanism == "cuda-checkpoint" else None
        return ParkSupport(self._mechanism is not None, mechanism=self._mechanism, reason=why)

    def prepare_park(self) -> None:
        """Start the checkpoint helper now, after ready, so the first park does not pay for a
        Python start-up and ``cuInit`` (H200: the first park took 4.49 s, the later ones 1.8-2.1 s,
        bench/results/park-2026-12-03d)."""
        if self._mechanism == "cuda-checkpoint":
            self._helper().start()

    def _helper(self) -> Any:
        from voxgate_server.engines.gpu.helper import CheckpointHelper

        with _HELPER_LOCK:
            if self._checkpoint_helper is None:
                self._checkpoint_helper = CheckpointHelper()
            return self._checkpoint_helper

    def releasable_buffers(self) -> list[Any]:
        """Device memory (``remappable.RemappableBuffer``) whose content is worthless once no
        request runs: released before the checkpoint instead of copied, re-made at the same
        address (zeroed) after the restore. None by default; the fast Turbo engine gives its KV
        cache."""
        return []

    def check_released_memory(self) -> None:
        """Raise ``EngineError`` while a releasable buffer is not mapped (a re-map that failed):
        a request would otherwise read unmapped memory."""
        lost = [b for b in self.releasable_buffers() if not b.mapped]
        if lost:
            raise EngineError(f"engine {getattr(self, 'id', '?')}: {len(lost)} GPU buffer(s) given back at park "
                              "could not be re-made; wake it again or restart the server")

    def _remap_buffers(self) -> float:
        t0 = time.perf_counter()
        for buf in self.releasable_buffers():
            try:
                buf.remap()
            except Exception as exc:  # noqa: BLE001 - reported as a failed wake
                raise EngineError(f"re-mapping the KV cache at {buf.ptr:#x} failed: {exc}") from exc
        return time.perf_counter() - t0

    def park(self) -> None:
        import torch

        t0 = time.perf_counter()
        torch.cuda.synchronize()
        if os.environ.get("VOXGATE_PARK_EMPTY_CACHE", "1") not in ("0", "false", "no"):
            torch.cuda.empty_cache()
        try:
            released = sum(buf.release() for buf in self.releasable_buffers())
        except Exception:
            self._remap_buffers()
            raise
        t1 = time.perf_counter()
        mechanism = self._mechanism or "cuda-checkpoint"
        try:
            if mechanism == "allocator":
                answer = self._sleeper().pause()
            else:
                answer = self._helper().park()
        except Exception:
            self._remap_buffers()  # not parked: the engine serves on, so its buffers come back now
            raise
        self.last_park = {"mechanism": mechanism, "prepare_s": t1 - t0,
                          **{k: v for k, v in answer.items() if k.endswith("_s")},
                          "total_s": time.perf_counter() - t0, "released_bytes": released,
                          "released_mib": released // 2**20}
        log.info("parked (%s): %s", mechanism, self.last_park)

    def _sleeper(self) -> Any:
        from voxgate_server.engines.gpu.sleep_memory import SleepMemory

        if self._sleep_memory is None:
            self._sleep_memory = SleepMemory()
        return self._sleep_memory

    def wake(self) -> None:
        """Restore (the helper), then re-make the released buffers at their addresses. A failed
        re-map raises: the engine stays parked and says why, it never serves on unmapped
        memory; the next wake tries again (the restore is then a no-op)."""
        t0 = time.perf_counter()
        mechanism = self._mechanism or "cuda-checkpoint"
        if mechanism == "allocator":
            answer = self._sleeper().resume() if self._sleep_memory is not None else {}
        else:
            answer = self._checkpoint_helper.wake() if self._checkpoint_helper is not None else {}
        remap_s = self._remap_buffers()
        self.last_wake = {"mechanism": mechanism, **{k: v for k, v in answer.items() if k.endswith("_s")},
                          "remap_s": remap_s, "total_s": time.perf_counter() - t0}
        log.info("woken (%s): %s", mechanism, self.last_wake)

    def close_parking(self) -> None:
        if self._checkpoint_helper is not None:
            self._checkpoint_helper.close()
            self._checkpoint_helper = None
