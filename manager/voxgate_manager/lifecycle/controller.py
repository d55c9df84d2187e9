"""Runs one model's lifecycle machine against its runtime: starts, readiness, warm-up, stops, waits.

The machine decides; this module only executes effects and wakes the requests that wait. Runtime
operations (start, stop) are serialised by a lock so a stop and the next start never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from voxgate_manager.config import DEFAULT_CONCURRENCY, ModelSpec
from voxgate_manager.lifecycle import parking
from voxgate_manager.lifecycle.liveness import LivenessWatch
from voxgate_manager.lifecycle.machine import Admit, EffectKind, Lifecycle, Limits, Reject, State, Wait
from voxgate_manager.metrics import Metrics
from voxgate_manager.runtimes.base import ExitInfo, Runtime, StartError
from voxgate_manager.runtimes.remote import RemoteRuntimeImpl

log = logging.getLogger("voxgate.manager.lifecycle")


def lifecycle_event(event: str, model: str, **fields: Any) -> None:
    """One structured (JSON) log line per lifecycle event."""
    log.info(json.dumps({"event": event, "model": model, **fields}, default=str))


class Rejected(Exception):
    def __init__(self, status: int, retry_after_s: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.retry_after_s, self.message, self.code = status, retry_after_s, message, code


class ClientGone(Exception):
    pass


# requests_total outcomes of an admitted request: the model's own 4xx answers and clients that
# left are not "ok" (nor model errors)
OUTCOMES = ("ok", "error", "client_error", "client_gone")


def limits_of(spec: ModelSpec) -> Limits:
    return Limits(
        concurrency=spec.concurrency or DEFAULT_CONCURRENCY,
        queue_size=spec.queue_size,
        idle_timeout_s=spec.idle_timeout_s,
        drain_timeout_s=spec.drain_timeout_s,
        retry_after_s=spec.retry_after_s,
        backoff_s=spec.restart_backoff_s,
        backoff_max_s=spec.restart_backoff_max_s,
        parked_timeout_s=spec.parked_timeout_s,
    )


def _json_field(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


class ModelController:
    def __init__(self, spec: ModelSpec, runtime: Runtime, http: httpx.AsyncClient, metrics: Metrics) -> None:
        self.spec = spec
        self.runtime = runtime
        self.http = http
        self.metrics = metrics
        self.machine = Lifecycle(limits_of(spec))
        self.runtime.on_exit = self._on_exit
        self._changed = asyncio.Event()
        self._rt_lock = asyncio.Lock()
        self._start_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._counts = (0, 0)
        self.last_start: dict[str, float] = {}  # phase -> seconds, of the latest successful start
        self.last_exit: ExitInfo | None = None
        self.voices_cache: tuple[int, bytes, str] | None = None  # status, body, content type
        # VRAM admission (manager-wide budget): set once this model's vram_mb is counted as in use
        self.vram_admitted = False
        self.server_caps = parking.ServerCaps()
        self.last_park_s: float | None = None
        self.parks_done = 0
        self._park_task: asyncio.Task[None] | None = None  # the park or wake call under way (one at a time)
        self.last_wake_s: float | None = None
        self.admission: Callable[[ModelController], Awaitable[None]] | None = None
        metrics.set_state(spec.id, self.machine.state)
        # label children looked up once: every request touches them twice
        self._inflight_gauge = metrics.inflight.labels(spec.id)
        self._queue_gauge = metrics.queue_depth.labels(spec.id)
        self._outcome_count = {o: metrics.requests.labels(spec.id, o) for o in OUTCOMES}
        self.liveness = LivenessWatch(self)
        self.aborts: set[Callable[[str], None]] = set()  # in-flight requests' abort hooks (a hung model)
        self.successor: ModelController | None = None  # set by a reload that replaced this entry
        self.start_gate: Callable[[], Awaitable[None]] | None = None  # a replaced controller's stop, awaited before our start
        self._inflight_gauge.set(0)
        self._queue_gauge.set(0)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def state(self) -> State:
        return self.machine.state

    # -- effects ------------------------------------------------------------------------------

    def _apply(self) -> None:
        m = self.machine
        transitions = m.take_transitions()
        effects = m.take_effects()
        if not transitions and not effects and (m.inflight, m.waiting) == self._counts:
            return  # nothing happened (an idle tick): do not wake the waiters
        self._counts = (m.inflight, m.waiting)
        for tr in transitions:
            self.metrics.set_state(self.id, tr.new)
            fields: dict[str, Any] = {"from": tr.old.value, "to": tr.new.value, "reason": tr.reason}
            if tr.new is State.FAILED:
                fields["failures"] = m.failures
                fields["retry_in_s"] = round(max(0.0, m.retry_at - time.monotonic()), 2)
            lifecycle_event("state", self.id, **fields)
        for eff in effects:
            if eff.kind is EffectKind.START:
                self.metrics.cold_starts.labels(self.id).inc()
                self._start_task = asyncio.create_task(self._run_start(eff.attempt, adopt=False))
            elif eff.kind is EffectKind.CANCEL_START:
                if self._start_task is not None and not self._start_task.done():
                    self._start_task.cancel()
            elif eff.kind is EffectKind.STOP:
                self._stop_task = asyncio.create_task(self._run_stop(eff.reason))
            elif eff.kind is EffectKind.PARK:
                self._park_task = asyncio.create_task(self._run_park(eff.reason))
            elif eff.kind is EffectKind.UNPARK:
                self._park_task = asyncio.create_task(self._run_unpark(eff.reason))
        self._inflight_gauge.set(m.inflight)
        self._queue_gauge.set(m.waiting)
        # every change may unblock a waiter (a WAKE effect, a state change, a freed slot): wake them all
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    # -- requests -----------------------------------------------------------------------------

    async def acquire(self, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> ModelController:
        """Wait until a request may be proxied (admitted), or raise Rejected / ClientGone. Returns the
        controller that admitted it: a reload may have replaced this one meanwhile, and the request
        then moves to the new entry's controller (release() goes there too)."""
        if self.successor is not None:
            return await self.successor.acquire(is_disconnected)
        m = self.machine
        arrived = time.monotonic()
        ticket, decision = m.arrive(arrived)
        self._apply()
        deadline = arrived + self.spec.hold_max_s
        next_check = arrived + 1.0
        while isinstance(decision, Wait):
            assert ticket is not None
            changed = self._changed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                m.leave(ticket, time.monotonic())
                self._apply()
                self.metrics.requests.labels(self.id, "hold_timeout").inc()
                if m.state is State.READY:  # it was ready all along: every slot was busy
                    raise Rejected(
                        503, self.spec.retry_after_s,
                        f"model {self.id!r} is busy: all {self.spec.concurrency} of its slots stayed in use for "
                        f"hold_max_s={self.spec.hold_max_s:g}s; retry later", "model_busy")
                raise Rejected(
                    503,
                    self.spec.retry_after_s,
                    f"model {self.id!r} is {m.state.value} and was not ready within hold_max_s={self.spec.hold_max_s:g}s; retry later",
                    "model_not_ready",
                )
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                m.leave(ticket, time.monotonic())
                self._apply()
                raise
            if self.successor is not None:  # replaced by a reload while waiting: wait for the new entry
                m.leave(ticket, time.monotonic())
                self._apply()
                return await self.successor.acquire(is_disconnected)
            if is_disconnected is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                if await is_disconnected():  # the client went away while held: free its place
                    m.leave(ticket, time.monotonic())
                    self._apply()
                    raise ClientGone()
            decision = m.poll(ticket, time.monotonic())
            self._apply()
        if isinstance(decision, Reject):
            self.metrics.requests.labels(self.id, decision.code).inc()
            raise Rejected(decision.status, decision.retry_after_s, f"model {self.id!r}: {decision.reason}", decision.code)
        assert isinstance(decision, Admit)
        self.liveness.ensure_running()
        return self

    def release(self, ok: bool = True, outcome: str | None = None) -> None:
        """An admitted request ended; ``ok`` says whether the model did its part (resets failures)."""
        self.machine.finish(time.monotonic(), ok)
        self._outcome_count[outcome or ("ok" if ok else "error")].inc()
        self._apply()

    def declare_dead(self, why: str) -> None:
        """The model is hung or gone though its runtime did not say so: the exit path (failed, cleaned
        up, restarted on demand), and every request in flight is aborted with ``why``."""
        if self.state is not State.READY:
            return
        self._on_exit(ExitInfo("health", None, why))
        for abort in list(self.aborts):
            abort(why)

    def retire(self, successor: ModelController) -> None:
        """A reload replaced this entry: no more starts here; waiting requests move to ``successor``."""
        self.successor = successor
        self.machine.closing = True
        successor.start_gate = self.wait_released
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def wait_released(self) -> None:
        """Until this controller's runtime is stopped (a successor must not start on the same port)."""
        while self.machine.state in (State.READY, State.STARTING, State.DRAINING) or (
                self._stop_task is not None and not self._stop_task.done()):
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.5)

    # -- start --------------------------------------------------------------------------------

    async def _run_start(self, attempt: int, adopt: bool) -> None:
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        lifecycle_event("start", self.id, attempt=attempt, runtime=self.runtime.kind, adopt=adopt)
        try:
            async with self._rt_lock:
                try:
                    async with asyncio.timeout(self.spec.start_timeout_s):
                        if not adopt:
                            if self.start_gate is not None:
                                await self.start_gate()
                            if self.admission is not None:
                                await self.admission(self)
                            await self.runtime.start()
                        t1 = time.monotonic()
                        phases["container"] = t1 - t0
                        await self._wait_ready()
                        t2 = time.monotonic()
                        phases["readiness"] = t2 - t1
                        if self.spec.warmup is not None:
                            await self._warmup()
                        phases["warmup"] = time.monotonic() - t2
                except TimeoutError:
                    why = f"not ready within start_timeout_s={self.spec.start_timeout_s:g}s ({self._last_probe or 'no answer'})"
                    await self._fail_start(attempt, why, "start_timeout")
                    return
                except StartError as exc:
                    await self._fail_start(attempt, str(exc), "start_error")
                    return
                except Exception as exc:  # e.g. the Docker engine's connection dropped (dockerd restarting)
                    await self._fail_start(attempt, f"{type(exc).__name__}: {exc}", "start_error")
                    return
        except asyncio.CancelledError:
            lifecycle_event("start_cancelled", self.id, attempt=attempt)
            return
        phases["total"] = time.monotonic() - t0
        for phase, secs in phases.items():
            self.metrics.start_duration.labels(self.id, phase).observe(secs)
        self.last_start = {k: round(v, 4) for k, v in phases.items()}
        lifecycle_event("ready", self.id, attempt=attempt, **{f"{k}_s": round(v, 3) for k, v in phases.items()})
        await self._learn_caps()
        self.machine.started(attempt, time.monotonic())
        self._apply()
        if isinstance(self.runtime, RemoteRuntimeImpl) and self.machine.state is State.READY:
            self.runtime.watch()

    async def _fail_start(self, attempt: int, why: str, reason: str) -> None:
        lifecycle_event("start_failed", self.id, attempt=attempt, error=why)
        self.vram_admitted = False
        self.metrics.start_failures.labels(self.id).inc()
        self.metrics.crashes.labels(self.id, reason).inc()
        self.machine.start_failed(attempt, time.monotonic(), why)
        self._apply()
        with contextlib.suppress(Exception):
            await self.runtime.stop()  # a half-started runtime must not linger (still under the lock)

    _last_probe: str = ""

    async def probe(self) -> str | None:
        """None when the readiness predicate holds, else what is wrong."""
        r = self.spec.readiness
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else None
        try:
            resp = await self.http.get(self.runtime.base_url + r.path, timeout=r.timeout_s, headers=headers)
        except httpx.HTTPError as exc:
            return f"{r.path}: {type(exc).__name__}"
        if resp.status_code != r.expect_status:
            return f"{r.path} answered {resp.status_code}"
        if r.json_field:
            try:
                value = _json_field(resp.json(), r.json_field)
            except ValueError:
                return f"{r.path} did not answer JSON"
            if value is _MISSING:
                return f"{r.path}: field {r.json_field!r} missing"
            if value != r.json_value:
                return f"{r.path}: {r.json_field}={value!r}, want {r.json_value!r}"
        return None

    async def _wait_ready(self) -> None:
        if getattr(self.runtime, "always_ready", False):  # a provider: nothing of ours to probe
            return
        r = self.spec.readiness
        delay = r.initial_interval_s
        while True:
            why = await self.probe()
            if why is None:
                self._last_probe = ""
                return
            self._last_probe = why
            await asyncio.sleep(delay)
            delay = min(delay * 2, r.max_interval_s)

    async def _warmup(self) -> None:
        w = self.spec.warmup
        assert w is not None
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}
        try:
            async with self.http.stream(w.method, self.runtime.base_url + w.path, json=w.body or None, headers=headers, timeout=w.timeout_s) as resp:
                async for _ in resp.aiter_raw():
                    pass
        except httpx.HTTPError as exc:
            raise StartError(f"warm-up request {w.method} {w.path} failed: {type(exc).__name__}: {exc}") from None
        if resp.status_code != w.expect_status:
            raise StartError(f"warm-up request {w.method} {w.path} answered {resp.status_code}, want {w.expect_status}")

    # -- parking ------------------------------------------------------------------------------

    async def _learn_caps(self) -> None:
        """Once ready: can the server park, and how many requests does it take at once (used
        when the entry sets no ``concurrency``)."""
        caps = await parking.capabilities(self.http, self.runtime.base_url, self.spec.upstream_model or self.id,
                                          self.spec.api_key)
        self.server_caps = caps
        m = self.machine
        m.parkable = self.spec.park and caps.can_park
        if self.spec.concurrency is None:
            m.limits.concurrency = caps.concurrency or DEFAULT_CONCURRENCY
        lifecycle_event("capabilities", self.id, can_park=caps.can_park, park_reason=caps.park_reason,
                        concurrency=m.limits.concurrency)

    def _park_timeout(self) -> float:
        return max(30.0, self.spec.drain_timeout_s + 30.0)

    async def _run_park(self, reason: str) -> None:
        t0 = time.monotonic()
        async with self._rt_lock:
            if self.machine.state is not State.PARKING:
                return
            out = await parking.park(self.http, self.runtime.base_url, self.spec.upstream_model or self.id,
                                     self.spec.api_key, self._park_timeout())
        took = time.monotonic() - t0
        if out.ok:
            self.parks_done += 1
            self.last_park_s = round(took, 3)
            self.metrics.parks.labels(self.id, reason.split(" ")[0]).inc()
            self.metrics.park_duration.labels(self.id).observe(took)
            lifecycle_event("parked", self.id, reason=reason, park_s=round(took, 3), server_park_s=out.seconds)
            self.machine.parked(time.monotonic())
        else:
            lifecycle_event("park_failed", self.id, reason=reason, error=out.message, supported=out.supported)
            self.machine.park_failed(time.monotonic(), out.message, out.supported)
        self._apply()

    async def _run_unpark(self, reason: str) -> None:
        t0 = time.monotonic()
        async with self._rt_lock:
            if self.machine.state is not State.WAKING:
                return
            out = await parking.wake(self.http, self.runtime.base_url, self.spec.upstream_model or self.id,
                                     self.spec.api_key, max(30.0, self.spec.start_timeout_s))
        took = time.monotonic() - t0
        if out.ok:
            self.last_wake_s = round(took, 3)
            self.metrics.wakes.labels(self.id, reason.split(" ")[0]).inc()
            self.metrics.wake_duration.labels(self.id).observe(took)
            lifecycle_event("woken", self.id, reason=reason, wake_s=round(took, 3), server_wake_s=out.seconds)
            self.machine.woken(time.monotonic())
        else:
            lifecycle_event("wake_failed", self.id, reason=reason, error=out.message)
            self.metrics.crashes.labels(self.id, "wake_failed").inc()
            self.machine.wake_failed(time.monotonic(), out.message)
        self._apply()

    async def park(self) -> None:
        """Admin park: returns once parked (or raises Rejected with why not)."""
        m = self.machine
        if m.state is State.PARKED:
            return
        if m.state is State.READY and not m.parkable:
            why = "parking is off for this entry" if not self.spec.park else (
                f"its server cannot park: {self.server_caps.park_reason or 'not advertised'}")
            raise Rejected(409, self.spec.retry_after_s, f"model {self.id!r} cannot park: {why}", "park_not_supported")
        if not m.request_park(time.monotonic()) and m.state is not State.PARKING:
            raise Rejected(409, self.spec.retry_after_s, f"model {self.id!r} is {m.state.value}, not ready: not parked",
                           "not_ready")
        self._apply()
        parks_before = self.parks_done
        while m.state is State.PARKING:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.5)
        # parked, and possibly already waking for requests that came meanwhile: a park all the same
        if self.parks_done == parks_before:
            raise Rejected(409, self.spec.retry_after_s, f"model {self.id!r} was not parked: {m.last_error or m.state.value}",
                           "park_failed")

    async def wake(self) -> None:
        """Admin wake: returns once ready again (a model that is not parked is left alone)."""
        m = self.machine
        if m.request_unpark(time.monotonic()):
            self._apply()
        while m.state is State.WAKING:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.5)

    # -- stop ---------------------------------------------------------------------------------

    async def _run_stop(self, reason: str) -> None:
        t0 = time.monotonic()
        if self._start_task is not None and not self._start_task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await self._start_task
        async with self._rt_lock:
            await self.runtime.stop()
        self.vram_admitted = False
        base = reason.split(" ")[0]
        self.metrics.stops.labels(self.id, base).inc()
        if reason == "idle":
            self.metrics.idle_stops.labels(self.id).inc()
        lifecycle_event("stopped", self.id, reason=reason, stop_s=round(time.monotonic() - t0, 3))
        self.machine.stopped(time.monotonic())
        self._apply()

    # -- runtime exit -------------------------------------------------------------------------

    def _on_exit(self, info: ExitInfo) -> None:
        m = self.machine
        unexpected = m.state in (State.READY, State.STARTING, State.PARKING, State.PARKED, State.WAKING) or (
            m.state is State.DRAINING and not m.stopping)
        self.last_exit = info
        lifecycle_event("exit", self.id, reason=info.reason, exit_code=info.exit_code, message=info.message, unexpected=unexpected)
        if info.reason == "external" and m.state is State.READY:  # stopped by hand: a stop, not a crash
            self.metrics.stops.labels(self.id, "external").inc()
            self.vram_admitted = False
            m.stopped_outside(time.monotonic(), info.message)
            self._apply()
            return
        if unexpected:
            self.metrics.crashes.labels(self.id, info.reason).inc()
        m.exited(time.monotonic(), info.message)
        self._apply()
        if unexpected and m.state is State.FAILED:
            # the runtime is gone (or unhealthy): clean up what is left, serialised with starts
            asyncio.create_task(self._cleanup_after_exit())

    async def _cleanup_after_exit(self) -> None:
        async with self._rt_lock:
            if self.machine.state is State.FAILED:
                with contextlib.suppress(Exception):
                    await self.runtime.stop()
                self.vram_admitted = False

    # -- admin & start-up ---------------------------------------------------------------------

    def tick(self) -> None:
        self.machine.tick(time.monotonic())
        self._apply()

    async def adopt(self) -> str:
        """At manager start-up: take over a runtime already running (docker), without restarting it."""
        found = await self.runtime.discover()
        if found != "running":
            return found
        ready = await self.probe() is None
        self.vram_admitted = True  # it holds its memory already
        attempt = self.machine.adopt(time.monotonic(), ready=ready)
        lifecycle_event("adopted", self.id, ready=ready, runtime=self.runtime.describe())
        if ready:
            await self._learn_caps()
        else:
            self._start_task = asyncio.create_task(self._run_start(attempt, adopt=True))
        self._apply()
        return "adopted"

    async def load(self) -> None:
        """Admin load: start if needed and wait until ready (bounded by hold_max_s), like a request."""
        ctl = await self.acquire()
        ctl.machine.finish(time.monotonic(), ok=True)
        ctl._apply()

    async def unload(self, reason: str = "unload") -> None:
        """Drain and stop; returns when stopped."""
        if self.machine.request_stop(time.monotonic(), reason):
            self._apply()
        await self.wait_settled()

    async def wait_settled(self) -> None:
        while self.machine.state is State.DRAINING or (self._stop_task is not None and not self._stop_task.done()):
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.5)

    async def shutdown(self, stop_runtime: bool) -> None:
        m = self.machine
        self.liveness.cancel()
        if stop_runtime or not self.runtime.adoptable:
            m.shutdown(time.monotonic())
            self._apply()
            await self.wait_settled()
        else:
            m.closing = True
            if self._start_task is not None and not self._start_task.done():
                self._start_task.cancel()
            self._apply()
            # let in-flight work finish (bounded); the runtime keeps running for the next manager
            deadline = time.monotonic() + self.spec.drain_timeout_s
            while m.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        await self.runtime.close()

    def status(self) -> dict[str, Any]:
        m = self.machine
        now = time.monotonic()
        deadline = m.idle_deadline()
        out: dict[str, Any] = {
            "id": self.id,
            "aliases": self.spec.aliases,
            "state": m.state.value,
            "runtime": self.runtime.describe(),
            "requests_in_flight": m.inflight,
            "queue_depth": m.waiting,
            "idle_deadline_s": round(deadline - now, 2) if deadline is not None else None,
            "idle_deadline": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + deadline - now)) if deadline is not None else None,
            "idle_timeout_s": self.spec.idle_timeout_s,
            "failures": m.failures,
            "last_error": m.last_error or None,
            "last_start_s": self.last_start or None,
            "vram_mb": self.spec.vram_mb,
            "concurrency": m.limits.concurrency,
            "can_park": m.parkable,
            "parked_timeout_s": self.spec.parked_timeout_s,
            "last_park_s": self.last_park_s,
            "last_wake_s": self.last_wake_s,
        }
        parked_deadline = m.parked_deadline()
        if parked_deadline is not None:
            out["parked_deadline_s"] = round(parked_deadline - now, 2)
        if self.last_exit is not None:
            out["last_exit"] = {"reason": self.last_exit.reason, "exit_code": self.last_exit.exit_code, "message": self.last_exit.message}
        if m.state is State.FAILED:
            out["retry_in_s"] = round(max(0.0, m.retry_at - now), 2)
        return out
