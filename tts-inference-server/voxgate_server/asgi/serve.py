"""uvicorn's server with a clean stop on SIGTERM (``docker stop``, the manager's idle stop).

uvicorn's own stop left tracebacks: requests still queued when its grace time ran out were
cancelled mid-wait (a 500 and "Exception in ASGI application"), and engine threads still
running after the loop closed failed with "Event loop is closed". Here the first SIGTERM or
SIGINT refuses queued requests at once (503 ``shutting_down``), gives running ones
``VOXGATE_SHUTDOWN_GRACE_S`` to finish, then ends them, all before uvicorn's own deadline. The
process then exits 0, as a service that was asked to stop and did; uvicorn re-raises the signal
instead, which reports exit code 143 to Docker and the manager.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from voxgate_server.runtime import Runtime

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class VoxgateServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime, grace_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:  # noqa: ANN001 - uvicorn's signature
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.runtime.begin_shutdown, self.grace_s)

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
