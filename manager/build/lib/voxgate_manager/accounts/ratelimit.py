"""Limits on the auth routes: a sliding window per client address, and a lockout per account
that doubles with every failed password after the first few (reset by a good one).

In memory: they guard one manager process, and a restart forgetting them only shortens a lockout."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    """At most ``limit`` events per ``window_s`` per key."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, now: float) -> float:
        """Record one event; 0 if allowed, else the seconds until one more would be."""
        if self.limit <= 0:
            return 0.0
        q = self._hits.get(key)
        if q is None:
            if len(self._hits) >= self.max_keys:  # bounded memory under a flood of addresses
                self._prune(now)
            q = self._hits[key] = deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return max(0.001, q[0] + self.window_s - now)
        q.append(now)
        return 0.0

    def _prune(self, now: float) -> None:
        for k in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window_s]:
            del self._hits[k]
        if len(self._hits) >= self.max_keys:
            self._hits.clear()


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class Lockout:
    """After ``after`` consecutive failures an account is locked for ``base_s``, doubling with each
    further failure up to ``max_s``. Unknown usernames are tracked the same way, so the answers
    do not tell which accounts exist."""

    def __init__(self, after: int, base_s: float, max_s: float) -> None:
        self.after, self.base_s, self.max_s = after, base_s, max_s
        self._by_key: dict[str, _Failures] = {}

    def locked_for(self, key: str, now: float) -> float:
        f = self._by_key.get(key)
        return max(0.0, f.locked_until - now) if f else 0.0

    def failed(self, key: str, now: float) -> float:
        """Count a failure; the lock it causes in seconds (0: none yet)."""
        f = self._by_key.setdefault(key, _Failures())
        f.count += 1
        if self.after <= 0 or f.count < self.after:
            return 0.0
        lock = min(self.max_s, self.base_s * 2 ** (f.count - self.after))
        f.locked_until = now + lock
        return lock

    def succeeded(self, key: str) -> None:
        self._by_key.pop(key, None)
