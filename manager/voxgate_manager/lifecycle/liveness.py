"""Is a ready model still answering? Asked only while it has work in flight (a model nobody uses is
never probed), and once at once when the proxy could not reach a model it thought ready.

A SIGSTOPped or wedged server keeps its port open: connections are accepted by the kernel and then
nothing answers, so without this its streams would hang until each client gave up. A model declared
hung or dead goes through the controller's exit path (failed, restarted by the next request) and its
in-flight requests are aborted with a clean error.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from voxgate_manager.lifecycle.machine import State

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController


class LivenessWatch:
    def __init__(self, ctl: ModelController) -> None:
        self.ctl = ctl
        self._task: asyncio.Task[None] | None = None

    def _busy(self) -> bool:
        return self.ctl.state is State.READY and self.ctl.machine.inflight > 0

    def ensure_running(self) -> None:
        """Called when a request is admitted: watch while anything is in flight."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        spec = self.ctl.spec.liveness
        misses = 0
        while self._busy():
            await asyncio.sleep(spec.interval_s)
            if not self._busy():
                return
            why = await self.answer(spec.timeout_s)
            if why is None:
                misses = 0
                continue
            misses += 1
            if misses >= spec.failures and self._busy():
                self.ctl.declare_dead(f"model did not answer its liveness check {misses} times in a row "
                                      f"(each within {spec.timeout_s:g}s): {why}")
                return

    async def answer(self, timeout_s: float) -> str | None:
        """None if the model's server answers anything at its readiness path, else what happened."""
        ctl = self.ctl
        headers = {"Authorization": f"Bearer {ctl.spec.api_key}"} if ctl.spec.api_key else None
        try:
            await ctl.http.get(ctl.runtime.base_url + ctl.spec.readiness.path, timeout=timeout_s, headers=headers)
        except httpx.TimeoutException:
            return f"no answer from {ctl.spec.readiness.path} within {timeout_s:g}s"
        except httpx.HTTPError as exc:
            return f"{ctl.spec.readiness.path}: {type(exc).__name__}"
        return None

    async def check_now(self) -> bool:
        """After the proxy could not reach a model in ``ready``: probe once; True if it was declared
        dead (the next request starts it again), False if it answers (or is no longer ready)."""
        if self.ctl.state is not State.READY:
            return False
        why = await self.answer(self.ctl.spec.readiness.timeout_s)
        if why is None or self.ctl.state is not State.READY:
            return False
        self.ctl.declare_dead(f"model stopped answering (the proxy could not reach it; health check: {why})")
        return True

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
