"""The parked state of one engine slot: its state, the gate that holds requests while it is
parked (or parking, or waking), and the count of requests a park waits for.

awake -> parking (POST /admin/park: new requests are held, in-flight ones finish) -> parked
(``Engine.park`` returned) -> waking (POST /admin/wake, or the first request that arrives) ->
awake (``Engine.wake`` returned; held requests go on). Every transition runs on the event loop;
the engine's blocking calls run in a thread. A request that arrives while parking waits for the
park to finish and then wakes the engine: it is served, never refused.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import Any

from voxgate_server.engines.base import Engine, EngineError, ParkSupport

log = logging.getLogger("voxgate.parking")


class ParkState(str, enum.Enum):
    AWAKE = "awake"
    PARKING = "parking"
    PARKED = "parked"
    WAKING = "waking"


class ParkRefused(Exception):
    """Parking is not possible now (unsupported, or in-flight work outlived the drain)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EnginePark:
    def __init__(self, engine: Engine, support: ParkSupport) -> None:
        self.engine = engine
        self.support = support
        self.state = ParkState.AWAKE
        self.in_flight = 0
        self.held = 0
        self.parks = 0
        self.wakes = 0
        self.last_park_s: float | None = None
        self.last_wake_s: float | None = None
        self.error: str | None = None
        self._changed = asyncio.Condition()
        self._op = asyncio.Lock()
        self._wake_task: asyncio.Task[None] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state.value, **self.support.as_dict(), "parks": self.parks,
                               "wakes": self.wakes, "held": self.held}
        if self.last_park_s is not None:
            out["last_park_s"] = round(self.last_park_s, 3)
        if self.last_wake_s is not None:
            out["last_wake_s"] = round(self.last_wake_s, 3)
        for name in ("last_park", "last_wake"):
            detail = getattr(self.engine, name, None)
            if isinstance(detail, dict):
                out[f"{name}_detail"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in detail.items()}
        if self.error:
            out["error"] = self.error
        return out

    async def _set(self, state: ParkState) -> None:
        async with self._changed:
            self.state = state
            self._changed.notify_all()

    # -- requests ------------------------------------------------------------------------------

    async def enter(self) -> None:
        """Wait until the engine is awake (waking it if parked), then count the request in."""
        if self.state is ParkState.AWAKE:
            self.in_flight += 1
            return
        self.held += 1
        woke = False
        try:
            async with self._changed:
                while self.state is not ParkState.AWAKE:
                    if self.state is ParkState.PARKED:
                        if woke and self.error:  # the wake this request asked for failed
                            raise EngineError(f"engine {self.engine.id} is parked and {self.error}")
                        woke = True
                        self._start_wake()
                    await self._changed.wait()
                self.in_flight += 1
        finally:
            self.held -= 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.state is ParkState.PARKING:
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _start_wake(self) -> None:
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.get_running_loop().create_task(self._wake_quietly())

    async def _wake_quietly(self) -> None:
        try:
            await self.wake(reason="request")
        except EngineError:
            pass  # recorded in ``error``; the held requests are answered by ``enter``

    # -- admin ----------------------------------------------------------------------------------

    async def park(self, drain_timeout_s: float) -> float:
        """Park; returns the seconds ``Engine.park`` took (0 if already parked)."""
        if not self.support.supported:
            raise ParkRefused(f"engine {self.engine.id} cannot park: {self.support.reason}", "park_not_supported")
        async with self._op:
            if self.state is ParkState.PARKED:
                return 0.0
            await self._set(ParkState.PARKING)
            try:
                async with self._changed:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.in_flight == 0), drain_timeout_s)
            except TimeoutError:
                await self._set(ParkState.AWAKE)
                raise ParkRefused(f"engine {self.engine.id}: {self.in_flight} requests still in flight after "
                                  f"{drain_timeout_s:g} s; not parked", "park_busy") from None
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.engine.park)
            except Exception as exc:  # noqa: BLE001 - reported, the engine stays awake
                self.error = f"park failed: {exc}"
                log.error("engine %s: %s", self.engine.id, self.error)
                await self._set(ParkState.AWAKE)
                raise ParkRefused(f"engine {self.engine.id}: {self.error}", "park_failed") from None
            self.last_park_s = time.perf_counter() - started
            self.parks += 1
            self.error = None
            log.info("engine %s parked in %.3f s", self.engine.id, self.last_park_s)
            await self._set(ParkState.PARKED)
            if self.held:
                self._start_wake()
            return self.last_park_s

    async def wake(self, reason: str = "admin") -> float:
        """Wake; returns the seconds ``Engine.wake`` took (0 if it was awake). A failed wake
        leaves the engine parked and raises ``EngineError`` (held requests keep waiting for the
        next wake)."""
        async with self._op:
            if self.state is ParkState.AWAKE:
                return 0.0
            await self._set(ParkState.WAKING)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.engine.wake)
            except Exception as exc:  # noqa: BLE001
                self.error = f"wake failed: {exc}"
                log.error("engine %s: %s", self.engine.id, self.error)
                await self._set(ParkState.PARKED)
                raise EngineError(self.error) from exc
            self.last_wake_s = time.perf_counter() - started
            self.wakes += 1
            self.error = None
            log.info("engine %s woken in %.3f s (%s)", self.engine.id, self.last_wake_s, reason)
            await self._set(ParkState.AWAKE)
            return self.last_wake_s
