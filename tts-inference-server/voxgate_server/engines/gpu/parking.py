"""Parking for CUDA engines: free the GPU memory and keep the process, through the driver's
checkpoint API (``cuda_checkpoint``). Used by the chatterbox engines; any engine with a
``device`` attribute can mix it in."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from voxgate_server.engines.base import ParkSupport

log = logging.getLogger("voxgate.engine.gpu.parking")


class CudaCheckpointParking:
    """Mixin: ``park_support``, ``park`` and ``wake`` for an engine whose ``device`` is "cuda".

    ``VOXGATE_PARK_EMPTY_CACHE`` (default 1): before the checkpoint, PyTorch's cached but unused
    blocks are returned to the driver, so fewer bytes are copied each way (CUDA-graph pools and
    live tensors stay)."""

    device: str
    _checkpoint_helper: Any = None
    last_park: dict[str, Any] | None = None
    last_wake: dict[str, Any] | None = None

    def park_support(self) -> ParkSupport:
        if self.device != "cuda":
            return ParkSupport(False, reason=f"runs on {self.device}: no GPU memory to give back")
        from voxgate_server.engines.gpu.cuda_checkpoint import probe

        ok, why = probe()
        return ParkSupport(ok, mechanism="cuda-checkpoint" if ok else None, reason=None if ok else why)

    def park(self) -> None:
        import torch

        from voxgate_server.engines.gpu.helper import CheckpointHelper

        t0 = time.perf_counter()
        torch.cuda.synchronize()
        if os.environ.get("VOXGATE_PARK_EMPTY_CACHE", "1") not in ("0", "false", "no"):
            torch.cuda.empty_cache()
        t1 = time.perf_counter()
        if self._checkpoint_helper is None:
            self._checkpoint_helper = CheckpointHelper()
        answer = self._checkpoint_helper.park()
        self.last_park = {"prepare_s": t1 - t0, **{k: v for k, v in answer.items() if k.endswith("_s")},
                          "total_s": time.perf_counter() - t0}
        log.info("parked (cuda-checkpoint): %s", self.last_park)

    def wake(self) -> None:
        t0 = time.perf_counter()
        answer = self._checkpoint_helper.wake() if self._checkpoint_helper is not None else {}
        self.last_wake = {**{k: v for k, v in answer.items() if k.endswith("_s")}, "total_s": time.perf_counter() - t0}
        log.info("woken (cuda-checkpoint): %s", self.last_wake)

    def close_parking(self) -> None:
        if self._checkpoint_helper is not None:
            self._checkpoint_helper.close()
            self._checkpoint_helper = None
