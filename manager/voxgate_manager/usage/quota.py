"""Admission of a speech request against its key's limits, and recording what it used.

Checks and reservations run synchronously on the event loop (no await between reading the usage
and reserving this request's share), which is what keeps concurrent requests from overrunning a
limit together. Audio seconds are not known before synthesis: a request reserves an estimate
from its text (``CHARS_PER_SECOND`` at speed 1) and records the real duration when the cache
measured it, else the estimate."""

from __future__ import annotations

import calendar
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from voxgate_manager.errors import APIError
from voxgate_manager.usage.limits import KeyLimits, Limits
from voxgate_manager.usage.store import UsageStore, day_of

CHARS_PER_SECOND = 15.0  # English read aloud at speed 1 (Piper and Chatterbox measure 14-17)


def estimate_seconds(chars: int, speed: float) -> float:
    return chars / CHARS_PER_SECOND / max(0.25, speed)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def next_day(now: float) -> float:
    t = time.gmtime(now)
    return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400


def next_month(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


@dataclass
class Grant:
    """An admitted request's reservation; ``settle`` records what it really used, exactly once."""

    quota: Quota
    key_id: str
    chars: int
    audio_s: float
    at: float  # when admitted: the request counts on that UTC day
    done: bool = False

    def settle(self, model: str, ok: bool, audio_s: float | None, cost: float, cache_hit: bool, fallback: bool) -> None:
        if self.done:
            return
        self.done = True
        pending = self.quota.store.pending[self.key_id]
        pending[0] -= self.chars
        pending[1] -= self.audio_s
        if not ok:
            return  # a failed request costs the key nothing
        used_s = self.audio_s if audio_s is None else audio_s
        chars = 0 if cache_hit else self.chars  # a hit is free: it spends neither the model nor a paid API
        self.quota.store.record(self.key_id, model, chars, 0.0 if cache_hit else used_s, 0.0 if cache_hit else cost,
                                cache_hit, fallback, now=self.at)


class Quota:
    def __init__(self, store: UsageStore, limits: KeyLimits) -> None:
        self.store = store
        self.limits = limits
        self._minute: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, token: str | None, chars: int, speed: float, now: float | None = None,
              identity: str | None = None) -> Grant:
        """Reserve this request's share or raise 429 naming the limit and when it resets.
        ``identity`` (``user:<id>``) stands in for the key when the manager signed the caller in."""
        now = time.time() if now is None else now
        key_id, lim = self.limits.for_identity(identity) if identity else self.limits.for_token(token)
        seconds = estimate_seconds(chars, speed)
        self._check(key_id, lim, chars, seconds, now)
        pending = self.store.pending[key_id]
        pending[0] += chars
        pending[1] += seconds
        if lim.requests_per_minute is not None:
            self._minute[key_id].append(now)
        return Grant(self, key_id, chars, seconds, now)

    def _check(self, key_id: str, lim: Limits, chars: int, seconds: float, now: float) -> None:
        if lim.max_seconds is not None and seconds > lim.max_seconds:
            raise APIError(400, f"this request would make about {seconds:.0f}s of audio; the limit for key '{key_id}' is "
                           f"max_seconds={lim.max_seconds:g} per request (shorten the input)", code="max_seconds_exceeded",
                           param="input")
        if lim.requests_per_minute is not None:
            window = self._minute[key_id]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= lim.requests_per_minute:
                reset = window[0] + 60
                self._refuse(key_id, f"requests_per_minute={lim.requests_per_minute}", reset, now)
        pending_chars, pending_s = self.store.pending[key_id]
        checks = []
        if lim.chars_per_day is not None or lim.audio_seconds_per_day is not None:
            day_chars, day_s = self.store.used(key_id, day_of(now))
            checks.append(("chars_per_day", lim.chars_per_day, day_chars + pending_chars + chars, next_day(now)))
            checks.append(("audio_seconds_per_day", lim.audio_seconds_per_day, day_s + pending_s + seconds, next_day(now)))
        if lim.chars_per_month is not None or lim.audio_seconds_per_month is not None:
            month_chars, month_s = self.store.used(key_id, day_of(now)[:8] + "01")
            checks.append(("chars_per_month", lim.chars_per_month, month_chars + pending_chars + chars, next_month(now)))
            checks.append(("audio_seconds_per_month", lim.audio_seconds_per_month, month_s + pending_s + seconds, next_month(now)))
        for name, limit, would_be, reset in checks:
            if limit is not None and would_be > limit:
                self._refuse(key_id, f"{name}={limit:g}", reset, now, f" (this request would bring it to {would_be:.0f})")

    def _refuse(self, key_id: str, what: str, reset: float, now: float, detail: str = "") -> None:
        who = f"user '{key_id}'" if key_id.startswith("user:") else f"API key '{key_id}'"
        raise APIError(429, f"{who} reached its limit {what}{detail}; it resets at {_iso(reset)}",
                       code="quota_exceeded", headers={"Retry-After": str(max(1, int(reset - now + 0.999)))})
