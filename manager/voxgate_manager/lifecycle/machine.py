"""One model's lifecycle as a pure state machine (see manager/voxgate_manager/lifecycle/DESIGN.md).

No I/O, no clock, no asyncio: every method takes ``now`` and appends the effects the controller
must run (start, stop, cancel the start, wake waiters) to an outbox. All decisions for a model
are taken here, in one place, so "check the state, then act" can never interleave between two
requests: that interleaving is what wedged or double-started other managers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum


class State(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"
    # parked: the server process runs with its GPU memory given back (POST /admin/park)
    PARKING = "parking"
    PARKED = "parked"
    WAKING = "waking"


# the runtime runs (and holds its host memory) in these; a request in PARKED wakes it
RUNNING_PARKED = frozenset({State.PARKING, State.PARKED, State.WAKING})


class EffectKind(str, Enum):
    START = "start"  # start the runtime (attempt number given); ends in started()/start_failed()
    STOP = "stop"  # stop the runtime now; ends in stopped()
    CANCEL_START = "cancel_start"  # abandon the running start task (a STOP follows)
    WAKE = "wake"  # waiting requests should poll() again
    PARK = "park"  # ask the server to park; ends in parked()/park_failed()
    UNPARK = "unpark"  # ask the server to wake; ends in woken()/wake_failed()


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    attempt: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str


@dataclass
class Ticket:
    """A request waiting to be admitted; a failure of attempt >= min_attempt rejects it."""

    seq: int
    min_attempt: int
    arrived: float


@dataclass(frozen=True)
class Admit:
    pass


@dataclass(frozen=True)
class Wait:
    pass


@dataclass(frozen=True)
class Reject:
    status: int  # 429 queue full, 503 otherwise
    retry_after_s: int
    reason: str
    code: str  # machine-readable: queue_full, backoff, start_failed, shutting_down


Decision = Admit | Wait | Reject


@dataclass
class Limits:
    concurrency: int = 2
    queue_size: int = 64
    idle_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0
    retry_after_s: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    # a parked model is stopped after this long parked (frees its host memory); 0: never
    parked_timeout_s: float = 3600.0


@dataclass
class Lifecycle:
    limits: Limits = field(default_factory=Limits)
    state: State = State.STOPPED
    inflight: int = 0
    attempt: int = 0  # number of the latest start attempt
    failed_attempt: int = 0  # the latest start attempt that failed (0: none)
    failures: int = 0  # consecutive failures (start failures + crashes)
    retry_at: float = 0.0  # no start before this (backoff)
    last_end: float = 0.0  # when the last admitted request ended (or the model became ready)
    last_error: str = ""
    stop_reason: str = ""
    drain_deadline: float = 0.0
    stopping: bool = False  # STOP issued, stopped() not yet seen
    closing: bool = False  # the manager is shutting down: no new starts
    crashed_while_draining: bool = False
    parkable: bool = False  # the server said it can park (capabilities): idle parks instead of stopping
    parked_at: float = 0.0
    queue: OrderedDict[int, Ticket] = field(default_factory=OrderedDict)
    effects: list[Effect] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    _seq: int = 0

    # -- outbox -------------------------------------------------------------------------------

    def take_effects(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out

    def take_transitions(self) -> list[Transition]:
        out, self.transitions = self.transitions, []
        return out

    def _go(self, new: State, reason: str) -> None:
        if new is not self.state:
            self.transitions.append(Transition(self.state, new, reason))
            self.state = new

    def _start(self, reason: str) -> None:
        self.attempt += 1
        self._go(State.STARTING, reason)
        self.effects.append(Effect(EffectKind.START, self.attempt, reason))

    def _unpark(self, reason: str) -> None:
        self._go(State.WAKING, reason)
        self.effects.append(Effect(EffectKind.UNPARK, reason=reason))

    def _wake(self) -> None:
        if self.queue and not any(e.kind is EffectKind.WAKE for e in self.effects):
            self.effects.append(Effect(EffectKind.WAKE))

    def backoff(self, failures: int) -> float:
        """No wait after one failure (restart on the next request); doubling after repeats."""
        if failures <= 1:
            return 0.0
        return min(self.limits.backoff_s * 2 ** (failures - 2), self.limits.backoff_max_s)

    def _fail(self, now: float, reason: str) -> None:
        self.failures += 1
        self.retry_at = now + self.backoff(self.failures)
        self.last_error = reason
        self._go(State.FAILED, reason)

    def _retry_after(self, now: float) -> int:
        return max(self.limits.retry_after_s, math.ceil(self.retry_at - now))

    # -- requests -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def arrive(self, now: float) -> tuple[Ticket | None, Decision]:
        """A speech request (or an admin load) wants the model."""
        if self.closing:
            return None, Reject(503, self.limits.retry_after_s, "the manager is shutting down", "shutting_down")
        if self.state is State.FAILED and now < self.retry_at:
            return None, Reject(
                503, self._retry_after(now), f"model failed recently ({self.last_error}); retrying after backoff", "backoff"
            )
        immediate = self.state is State.READY and self.inflight < self.limits.concurrency and not self.queue
        if not immediate and len(self.queue) >= self.limits.queue_size:
            return None, Reject(429, self.limits.retry_after_s, "too many requests waiting for this model", "queue_full")
        self._seq += 1
        min_attempt = self.attempt + 1 if self.state in (State.STOPPED, State.FAILED, State.DRAINING) else self.attempt
        ticket = Ticket(self._seq, min_attempt, now)
        self.queue[ticket.seq] = ticket
        if self.state in (State.STOPPED, State.FAILED):
            self._start("request")
        elif self.state is State.PARKED:
            self._unpark("request")
        return ticket, self.poll(ticket, now)

    def poll(self, ticket: Ticket, now: float) -> Decision:
        """Re-evaluate a waiting ticket (after a WAKE, or on first arrival)."""
        if ticket.seq not in self.queue:
            raise KeyError(f"ticket {ticket.seq} is not waiting")
        if self.closing:
            self._drop(ticket)
            return Reject(503, self.limits.retry_after_s, "the manager is shutting down", "shutting_down")
        if self.failed_attempt >= ticket.min_attempt:
            self._drop(ticket)
            return Reject(503, self._retry_after(now), f"model failed to start: {self.last_error}", "start_failed")
        if self.state is State.FAILED:
            if now < self.retry_at:
                self._drop(ticket)
                return Reject(503, self._retry_after(now), f"model failed ({self.last_error}); retrying after backoff", "backoff")
            self._start("request")
            return Wait()
        if self.state is State.READY:
            free = self.limits.concurrency - self.inflight
            if free > 0:
                for i, seq in enumerate(self.queue):
                    if i >= free:
                        break
                    if seq == ticket.seq:
                        self._drop(ticket)
                        self.inflight += 1
                        return Admit()
        return Wait()

    def _drop(self, ticket: Ticket) -> None:
        self.queue.pop(ticket.seq, None)

    def leave(self, ticket: Ticket, now: float) -> None:
        """A waiting request gave up (hold_max_s passed, or the client went away)."""
        was_head = next(iter(self.queue), None) == ticket.seq
        self._drop(ticket)
        if was_head:
            self._wake()

    def finish(self, now: float, ok: bool = True) -> None:
        """An admitted request ended: its last byte was sent, or it failed."""
        if self.inflight <= 0:
            raise RuntimeError("finish() without an admitted request")
        self.inflight -= 1
        self.last_end = now
        if ok and self.state is State.READY:
            self.failures = 0
        if self.state is State.DRAINING and self.inflight == 0 and not self.stopping:
            self.stopping = True
            self.effects.append(Effect(EffectKind.STOP, reason=self.stop_reason))
        self._wake()

    # -- runtime outcomes ---------------------------------------------------------------------

    def started(self, attempt: int, now: float) -> None:
        """Readiness and warm-up passed for this attempt."""
        if self.state is not State.STARTING or attempt != self.attempt:
            return  # a stale start (cancelled by a stop, or superseded)
        self.last_end = now
        self.last_error = ""
        self._go(State.READY, "ready")
        self._wake()

    def start_failed(self, attempt: int, now: float, reason: str) -> None:
        if self.state is not State.STARTING or attempt != self.attempt:
            return
        self.failed_attempt = attempt
        self._fail(now, reason)
        self._wake()

    def exited(self, now: float, reason: str) -> None:
        """The runtime died on its own (exit, OOM kill, remote health check failed)."""
        if self.state is State.STARTING:
            self.start_failed(self.attempt, now, reason)
            self.effects.append(Effect(EffectKind.CANCEL_START, self.attempt, reason))
        elif self.state is State.READY or self.state in RUNNING_PARKED:
            self._fail(now, reason)
            if self.queue and now >= self.retry_at and not self.closing:
                self._start("restart for waiting requests")
            self._wake()
        elif self.state is State.DRAINING and not self.stopping:
            self.crashed_while_draining = True
            self.last_error = reason
            self.stopping = True
            self.effects.append(Effect(EffectKind.STOP, reason=reason))

    def stopped_outside(self, now: float, reason: str) -> None:
        """The runtime was stopped from outside (``docker stop`` by hand): not a crash, so no failure
        is counted and there is no backoff; the next request starts it again."""
        if self.state is State.READY:
            self.last_error = reason
            self._go(State.STOPPED, "stopped outside the manager")
            if self.queue and not self.closing:
                self._start("request after an outside stop")
            self._wake()
        else:
            self.exited(now, reason)

    def stopped(self, now: float) -> None:
        """The runtime stop finished (or the runtime is known to be gone)."""
        if self.state is not State.DRAINING:
            return
        self.stopping = False
        if self.crashed_while_draining:
            self.crashed_while_draining = False
            self._fail(now, self.last_error)
        else:
            self._go(State.STOPPED, self.stop_reason or "stopped")
        if self.queue and not self.closing and (self.state is State.STOPPED or now >= self.retry_at):
            self._start("request waited during stop")
        self._wake()

    # -- stop paths ---------------------------------------------------------------------------

    def request_stop(self, now: float, reason: str) -> bool:
        """unload / reload / shutdown: drain in-flight work (bounded), then stop. True if it acts."""
        if self.state is State.FAILED:
            self.failures = 0
            self.retry_at = 0.0
            self._go(State.STOPPED, reason)
            return True
        if self.state is State.STARTING:
            self.stop_reason = reason
            self._go(State.DRAINING, reason)
            self.stopping = True
            self.effects.append(Effect(EffectKind.CANCEL_START, self.attempt, reason))
            self.effects.append(Effect(EffectKind.STOP, reason=reason))
            return True
        if self.state in RUNNING_PARKED:
            # nothing is in flight at the server while it parks, is parked or wakes: stop now
            # (a park or wake call still under way is ignored when it ends)
            self.stop_reason = reason
            self._go(State.DRAINING, reason)
            if not self.stopping:
                self.stopping = True
                self.effects.append(Effect(EffectKind.STOP, reason=reason))
            return True
        if self.state is State.READY:
            self.stop_reason = reason
            self.drain_deadline = now + self.limits.drain_timeout_s
            self._go(State.DRAINING, reason)
            if self.inflight == 0:
                self.stopping = True
                self.effects.append(Effect(EffectKind.STOP, reason=reason))
            return True
        return False

    def shutdown(self, now: float) -> None:
        self.closing = True
        self.request_stop(now, "shutdown")
        self._wake()

    def tick(self, now: float) -> None:
        """Periodic check: idle expiry and drain timeout."""
        deadline = self.idle_deadline()
        if deadline is not None and now >= deadline and self.parkable:
            self._go(State.PARKING, "idle")
            self.effects.append(Effect(EffectKind.PARK, reason="idle"))
        elif self.state is State.PARKED and self.limits.parked_timeout_s > 0 and (
                now >= self.parked_at + self.limits.parked_timeout_s):
            self.stop_reason = "parked_timeout"
            self._go(State.DRAINING, "parked_timeout")
            self.stopping = True
            self.effects.append(Effect(EffectKind.STOP, reason="parked_timeout"))
        elif deadline is not None and now >= deadline:
            self.stop_reason = "idle"
            self._go(State.DRAINING, "idle")
            self.stopping = True
            self.effects.append(Effect(EffectKind.STOP, reason="idle"))
        elif self.state is State.DRAINING and not self.stopping and now >= self.drain_deadline:
            self.stopping = True
            self.effects.append(Effect(EffectKind.STOP, reason=f"{self.stop_reason} (drain timeout)"))

    def idle_deadline(self) -> float | None:
        if self.state is not State.READY or self.inflight or self.queue:
            return None
        return self.last_end + self.limits.idle_timeout_s

    # -- parking ------------------------------------------------------------------------------

    def request_park(self, now: float, reason: str = "admin") -> bool:
        """Admin park: only a ready model whose server can park. In-flight requests finish at the
        server (it drains before it parks); new ones are held. True if it acts."""
        if self.state is not State.READY or not self.parkable or self.closing:
            return False
        self._go(State.PARKING, reason)
        self.effects.append(Effect(EffectKind.PARK, reason=reason))
        return True

    def request_unpark(self, now: float, reason: str = "admin") -> bool:
        """Admin wake of a parked model. True if it acts."""
        if self.state is not State.PARKED:
            return False
        self._unpark(reason)
        return True

    def parked(self, now: float) -> None:
        """The server parked. Requests that came meanwhile wake it again at once."""
        if self.state is not State.PARKING:
            return  # stopped (or crashed) meanwhile
        self.parked_at = now
        self._go(State.PARKED, "parked")
        if self.queue:
            self._unpark("request waited during park")

    def park_failed(self, now: float, reason: str, supported: bool = True) -> None:
        """The server refused or failed to park: it is still awake. ``supported=False`` (it
        cannot park at all) makes idle stop it from now on."""
        if self.state is not State.PARKING:
            return
        if not supported:
            self.parkable = False
        self.last_error = reason
        self._go(State.READY, f"park failed: {reason}")
        self._wake()

    def woken(self, now: float) -> None:
        if self.state is not State.WAKING:
            return
        self.last_end = now
        self.last_error = ""
        self._go(State.READY, "woken")
        self._wake()

    def wake_failed(self, now: float, reason: str) -> None:
        """The server could not wake: stop it (it counts as a failure); requests waiting
        restart it once it is stopped."""
        if self.state is not State.WAKING:
            return
        self.stop_reason = "wake_failed"
        self.last_error = reason
        self.crashed_while_draining = True
        self._go(State.DRAINING, f"wake failed: {reason}")
        self.stopping = True
        self.effects.append(Effect(EffectKind.STOP, reason="wake_failed"))

    def parked_deadline(self) -> float | None:
        if self.state is not State.PARKED or self.limits.parked_timeout_s <= 0:
            return None
        return self.parked_at + self.limits.parked_timeout_s

    # -- adoption -----------------------------------------------------------------------------

    def adopt(self, now: float, ready: bool) -> int:
        """A runtime found running at manager start-up: ready now, or still starting (no START)."""
        if self.state is not State.STOPPED:
            raise RuntimeError(f"adopt() in state {self.state.value}")
        self.attempt += 1
        if ready:
            self._go(State.STARTING, "adopted")
            self.started(self.attempt, now)
        else:
            self._go(State.STARTING, "adopted (not ready yet)")
        return self.attempt
