"""Fallback chains: which model answers when the one asked for cannot be ready in time.

A model's chain is itself followed by its ``fallback`` list (one level: the fallbacks' own
fallbacks are not followed, so a chain is what its entry says and cannot loop). Each model but the
last gets ``fallback_after_s`` to be admitted (policy ``fallback``), or its ``hold_max_s`` (policy
``queue``, for the first); a model that is stopped or failed is started by the attempt and keeps
starting after the request moved on, so the next request finds it ready; the next model of the
chain is started as soon as the first cannot answer at once (``warm_next``). A model that answers
with a connection failure or a provider error that is not the client's fault passes the request on
as well. When every model was passed: 503 with Retry-After."""

from __future__ import annotations

import asyncio
import time

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voxgate_manager.errors import APIError
from voxgate_manager.lifecycle.controller import ModelController, Rejected
from voxgate_manager.lifecycle.machine import State
from voxgate_manager.providers.base import ProviderError
from voxgate_manager.routing.admitted import ModelDied


class NotReadyInTime(Exception):
    pass


@dataclass
class Skip:
    model: str
    reason: str
    detail: str
    retry_after_s: int | None = None
    waited_s: float = 0.0  # how long this model was given before the request moved on


@dataclass
class Routed:
    response: Any
    ctl: ModelController
    skipped: list[Skip] = field(default_factory=list)
    from_cache: bool = False  # ``response`` is a fallback's stored answer: that model was never started

    @property
    def fallback_reason(self) -> str | None:
        return self.skipped[0].reason if self.skipped else None


def why_not_ready(ctl: ModelController) -> str:
    """The reason a request would wait, from the model's state as the request arrives."""
    state = ctl.state
    if state is State.STOPPED:
        return "cold_start"
    if state is State.FAILED:
        return "crashed" if ctl.last_exit is not None else "start_failed"
    if state is State.STARTING:
        return "starting"
    if state is State.DRAINING:
        return "stopping"
    return "busy"  # ready, but its concurrency and queue are taken


async def acquire_within(ctl: ModelController, is_disconnected: Callable[[], Awaitable[bool]],
                         bound: float | None) -> ModelController:
    """ctl.acquire, given up after ``bound`` seconds (the start it triggered goes on). Returns the
    controller that admitted the request: after a reload it is the new entry's, not ``ctl``."""
    if bound is None:
        return await ctl.acquire(is_disconnected)
    task = asyncio.ensure_future(ctl.acquire(is_disconnected))
    try:
        done, _ = await asyncio.wait({task}, timeout=bound)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    try:
        return await task  # admitted in the instant it was given up: keep it
    except asyncio.CancelledError:
        raise NotReadyInTime() from None


def chain_of(primary: ModelController, resolve: Callable[[str], ModelController | None]) -> list[ModelController]:
    out = [primary]
    for name in primary.spec.fallback:
        ctl = resolve(name)
        if ctl is not None and ctl not in out:
            out.append(ctl)
    return out


Opener = Callable[[ModelController], Awaitable[Any]]

# A parked model wakes in seconds (its weights go back on the GPU, no process start): it gets this long
# before the request moves on, when its fallback_after_s is shorter, so a wake is answered in the
# model's own voice and Home Assistant's 10 s setup check still has room for the fallback after it.
WAKE_PATIENCE_S = 7.0

_warming: set[asyncio.Task[None]] = set()  # strong references: a bare task may be collected mid-start


def warm_next(chain: list[ModelController], has_cached: Callable[[ModelController], bool] = lambda c: False) -> None:
    """The first model cannot answer now: start (or wake) the next one at once, so that when the
    request moves on after ``fallback_after_s`` its fallback is not a cold start of its own. On a
    GPU host just started, the GPU model and Piper are both stopped: 3 s plus Piper's own cold start
    would outlast Home Assistant's 10 s setup check."""
    if len(chain) < 2 or chain[0].state is State.READY or chain[0].spec.fallback_policy != "fallback":
        return
    nxt = chain[1]
    if nxt.state not in (State.STOPPED, State.PARKED) or has_cached(nxt):
        return  # running already, or its own cached answer will serve without a start

    async def load() -> None:
        try:
            await nxt.load()
        except Exception:  # Rejected, a failed start: the request's own attempt on it reports that
            pass

    task = asyncio.get_running_loop().create_task(load())
    _warming.add(task)
    task.add_done_callback(_warming.discard)


async def route(primary: ModelController, resolve: Callable[[str], ModelController | None],
                is_disconnected: Callable[[], Awaitable[bool]], open_: Opener,
                on_skip: Callable[[Skip], None] = lambda s: None,
                cached: Callable[[ModelController], Any | None] = lambda c: None,
                has_cached: Callable[[ModelController], bool] = lambda c: False) -> Routed:
    """Admit the request on the first model of the chain that can take it and open its answer.

    ``cached`` looks a fallback's own stored answer up before that model is asked: a hit answers
    without starting it or taking its lifecycle slot (the first model's cache was looked at before
    the chain, by the caller); ``has_cached`` says, without counting a hit, whether it would answer
    (then the next model is not warmed up ahead)."""
    chain = chain_of(primary, resolve)
    single = len(chain) == 1
    warm_next(chain, has_cached)
    skipped: list[Skip] = []
    for i, ctl in enumerate(chain):
        last = i == len(chain) - 1
        if last:
            bound = None  # the last resort gets its own hold_max_s
        elif i == 0 and primary.spec.fallback_policy == "queue":
            bound = primary.spec.hold_max_s
        else:
            bound = primary.spec.fallback_after_s
            if ctl.state in (State.PARKED, State.WAKING):
                bound = max(bound, WAKE_PATIENCE_S)
        if i > 0:
            hit = cached(ctl)
            if hit is not None:
                return Routed(hit, ctl, skipped, from_cache=True)
        skip = None
        for attempt in (1, 2):
            reason = why_not_ready(ctl)
            t0 = time.monotonic()
            try:
                ctl = await acquire_within(ctl, is_disconnected, bound)
            except NotReadyInTime:
                skip = Skip(ctl.id, reason, f"not ready within {bound:g}s ({ctl.state.value})", ctl.spec.retry_after_s,
                            time.monotonic() - t0)
                break
            except Rejected as exc:
                if single:
                    raise APIError(exc.status, exc.message, code=exc.code,
                                   headers={"Retry-After": str(exc.retry_after_s)}) from None
                skip = Skip(ctl.id, exc.code if exc.code not in ("model_not_ready",) else reason, exc.message,
                            exc.retry_after_s, time.monotonic() - t0)
                break
            try:
                response = await open_(ctl)
            except ModelDied as exc:  # declared dead by its health check: once more through the lifecycle
                ctl.release(ok=False)
                if attempt == 1:
                    continue
                if single:
                    raise
                skip = Skip(ctl.id, exc.code or "error", exc.message)
            except ProviderError as exc:
                ctl.release(ok=False)
                if single or not exc.fallback:  # nothing to fall back to, or the client's own mistake
                    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else {}
                    raise APIError(exc.status, exc.message, code=exc.code, headers=headers) from None
                skip = Skip(ctl.id, exc.code, exc.message, exc.retry_after_s)
            except APIError as exc:  # the model's server could not be reached
                ctl.release(ok=False)
                if single:
                    raise
                skip = Skip(ctl.id, exc.code or "error", exc.message)
            except BaseException:
                ctl.release(ok=False)
                raise
            else:
                return Routed(response, ctl, skipped)
            break
        assert skip is not None
        skipped.append(skip)
        on_skip(skip)
    retry = min((s.retry_after_s for s in skipped if s.retry_after_s), default=primary.spec.retry_after_s)
    names = " -> ".join(c.id for c in chain)
    detail = "; ".join(f"{s.model}: {s.reason} ({s.detail})" for s in skipped)
    raise APIError(503, f"no model of the chain {names} could answer: {detail}", code="fallback_exhausted",
                   headers={"Retry-After": str(max(1, int(retry)))})


