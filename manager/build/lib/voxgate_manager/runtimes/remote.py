"""A model served elsewhere (another voxgate on the LAN): routed only while its health check passes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from voxgate_manager.config import ModelSpec, RemoteRuntime
from voxgate_manager.runtimes.base import ExitInfo, Runtime


class RemoteRuntimeImpl(Runtime):
    """start() launches nothing: the controller's readiness wait is the health check. While the model
    is ready a poller re-checks health every ``health_interval_s``; a failure is reported like an exit."""

    kind = "remote"

    def __init__(self, spec: ModelSpec, probe: Callable[[], Awaitable[str | None]]) -> None:
        super().__init__()
        assert isinstance(spec.runtime, RemoteRuntime)
        self.spec = spec
        self.rt: RemoteRuntime = spec.runtime
        self.base_url = self.rt.base_url
        self._probe = probe  # returns None when healthy, else why not
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        return None

    def watch(self) -> None:
        """Called once the model is ready."""
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.rt.health_interval_s)
            why = await self._probe()
            if why is not None:
                self._poller = None
                self.on_exit(ExitInfo("health", None, f"health check of {self.base_url} failed: {why}"))
                return

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def close(self) -> None:
        await self.stop()
