"""Fallback chains: which model answers when the one asked for cannot be ready in time.

A model's chain is itself followed by its ``fallback`` list (one level: the fallbacks' own
fallbacks are not followed, so a chain is what its entry says and cannot loop). Each model but the
last gets ``fallback_after_s`` to be admitted (policy ``fallback``), or its ``hold_max_s`` (policy
``queue``, for the first); a model that is stopped or failed is started by the attempt and keeps
starting after the request moved on, so the next request finds it ready. A model that answers
with a connection failure or a provider error that is not the client's fault passes the request on
as well. When every model was passed: 503 with Retry-After."""

from __future__ import annotations

import asyncio
import time

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voxgate_manager.controller import ModelController, Rejected
from voxgate_manager.errors import APIError
from voxgate_manager.lifecycle import State
from voxgate_manager.providers.base import ProviderError


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


async def acquire_within(ctl: ModelController, is_disconnected: Callable[[], Awaitable[bool]], bound: float | None) -> None:
    """ctl.acquire, given up after ``bound`` seconds (the start it triggered goes on)."""
    if bound is None:
        await ctl.acquire(is_disconnected)
        return
    task = asyncio.ensure_future(ctl.acquire(is_disconnected))
    try:
        done, _ = await asyncio.wait({task}, timeout=bound)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        task.result()
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        raise NotReadyInTime() from None
    # admitted in the instant it was given up: keep it


def chain_of(primary: ModelController, resolve: Callable[[str], ModelController | None]) -> list[ModelController]:
    out = [primary]
    for name in primary.spec.fallback:
        ctl = resolve(name)
        if ctl is not None and ctl not in out:
            out.append(ctl)
    return out


Opener = Callable[[ModelController], Awaitable[Any]]


async def route(primary: ModelController, resolve: Callable[[str], ModelController | None],
                is_disconnected: Callable[[], Awaitable[bool]], open_: Opener,
                on_skip: Callable[[Skip], None] = lambda s: None,
                cached: Callable[[ModelController], Any | None] = lambda c: None) -> Routed:
    """Admit the request on the first model of the chain that can take it and open its answer.

    ``cached`` looks a fallback's own stored answer up before that model is asked: a hit answers
    without starting it or taking its lifecycle slot (the first model's cache was looked at before
    the chain, by the caller)."""
    chain = chain_of(primary, resolve)
    single = len(chain) == 1
    skipped: list[Skip] = []
    for i, ctl in enumerate(chain):
        last = i == len(chain) - 1
        if last:
            bound = None  # the last resort gets its own hold_max_s
        elif i == 0 and primary.spec.fallback_policy == "queue":
            bound = primary.spec.hold_max_s
        else:
            bound = primary.spec.fallback_after_s
        if i > 0:
            hit = cached(ctl)
            if hit is not None:
                return Routed(hit, ctl, skipped, from_cache=True)
        reason = why_not_ready(ctl)
        t0 = time.monotonic()
        try:
            await acquire_within(ctl, is_disconnected, bound)
        except NotReadyInTime:
            skip = Skip(ctl.id, reason, f"not ready within {bound:g}s ({ctl.state.value})", ctl.spec.retry_after_s,
                        time.monotonic() - t0)
            skipped.append(skip)
            on_skip(skip)
            continue
        except Rejected as exc:
            if single:
                raise APIError(exc.status, exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)}) from None
            skip = Skip(ctl.id, exc.code if exc.code not in ("model_not_ready",) else reason, exc.message, exc.retry_after_s,
                        time.monotonic() - t0)
            skipped.append(skip)
            on_skip(skip)
            continue
        try:
            response = await open_(ctl)
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
        skipped.append(skip)
        on_skip(skip)
    retry = min((s.retry_after_s for s in skipped if s.retry_after_s), default=primary.spec.retry_after_s)
    names = " -> ".join(c.id for c in chain)
    detail = "; ".join(f"{s.model}: {s.reason} ({s.detail})" for s in skipped)
    raise APIError(503, f"no model of the chain {names} could answer: {detail}", code="fallback_exhausted",
                   headers={"Retry-After": str(max(1, int(retry)))})


