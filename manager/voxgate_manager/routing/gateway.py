"""The manager's speech path beyond proxying: the feature flag, quotas, the response cache,
fallback chains and providers, in that order (resolve -> admit -> cache -> lifecycle -> proxy or
provider). A cache hit is answered before any model is looked at, so it never starts a model nor
moves its idle timer; a quota refusal costs nothing downstream."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge
from starlette.requests import Request

from voxgate_manager import db
from voxgate_manager.cache.key import cache_key, voice_name
from voxgate_manager.cache.store import Entry, ResponseCache, duration_from_bytes
from voxgate_manager.config import ModelSpec
from voxgate_manager.errors import APIError
from voxgate_manager.lifecycle.controller import ModelController, lifecycle_event
from voxgate_manager.providers.base import ProviderError
from voxgate_manager.providers.runtime import ProviderRuntime
from voxgate_manager.routing.admitted import open_admitted
from voxgate_manager.routing.chain import Skip, route
from voxgate_manager.routing.responses import CachedAnswer, ProviderResponse, TeeResponse
from voxgate_manager.usage.limits import load_limits
from voxgate_manager.usage.quota import Quota
from voxgate_manager.usage.store import UsageStore

if TYPE_CHECKING:
    from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.routing")


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    return token or None


def cache_bypassed(request: Request) -> bool:
    cc = request.headers.get("cache-control", "").lower()
    return "no-store" in cc or request.headers.get("x-voxgate-cache", "").lower() == "bypass"


def cacheable(spec: ModelSpec, payload: dict[str, Any]) -> bool:
    if spec.cache == "off":
        return False
    if spec.cache == "on":
        return True
    return not spec.sampling or payload.get("seed") is not None


def cost_of(spec: ModelSpec, chars: int, audio_s: float | None) -> tuple[float, str] | None:
    if spec.price is None:
        return None
    return spec.price.estimate(chars, audio_s), spec.price.currency


class Gateway:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        s = manager.settings
        self.speech_enabled = s.speech_enabled
        data = Path(s.data_dir) if s.data_dir else None
        self.cache: ResponseCache | None = None
        try:
            self.conn = db.connect(data / "voxgate.sqlite3" if data else ":memory:")
            if data is not None and s.cache_enabled and s.cache_max_mb > 0:
                self.cache = ResponseCache(data / "cache", int(s.cache_max_mb * 1024 * 1024), s.cache_ttl_s, self.conn)
            self.usage = UsageStore(self.conn)
        except (OSError, sqlite3.Error) as exc:  # a start-up problem the operator fixes: one clear line
            raise SystemExit(f"voxgate-manager: cannot use VOXGATE_MANAGER_DATA_DIR={s.data_dir!r}: {exc}") from None
        try:
            self.quota = Quota(self.usage, load_limits(s.quotas_file))
        except ValueError as exc:
            raise SystemExit(f"voxgate-manager: VOXGATE_MANAGER_QUOTAS_FILE: {exc}") from None
        r = manager.metrics.registry
        self.m_cache = Counter("voxgate_manager_cache_requests_total", "Speech requests by cache result (hit, miss, bypass)",
                               ["result"], registry=r)
        self.m_cache_stored = Counter("voxgate_manager_cache_stored_total", "Answers written to the cache", registry=r)
        self.m_evictions = Counter("voxgate_manager_cache_evictions_total", "Cache entries evicted for the size cap", registry=r)
        self.m_cache_bytes = Gauge("voxgate_manager_cache_bytes", "Bytes of audio in the cache", registry=r)
        self.m_hit_bytes = Counter("voxgate_manager_cache_hit_bytes_total", "Bytes answered from the cache", registry=r)
        self.m_fallbacks = Counter("voxgate_manager_fallbacks_total", "Requests passed on to the next model of a chain",
                                   ["model", "reason"], registry=r)
        self.m_quota = Counter("voxgate_manager_quota_rejections_total", "Speech requests refused by a key's limits",
                               ["key"], registry=r)
        self.m_provider_errors = Counter("voxgate_manager_provider_errors_total",
                                         "Provider calls that failed before any audio, by our error code", ["model", "code"],
                                         registry=r)
        if self.cache is not None:
            self.cache.on_evict = lambda n: self.m_evictions.inc(n)
            self.m_cache_bytes.set(self.cache.total_bytes())

    # -- the speech path ----------------------------------------------------------------------

    async def speech(self, request: Request, payload: dict[str, Any], ctl: ModelController,
                     identity: str | None = None) -> Any:
        """The answer to a speech request, not yet sent (an ASGI response). ``identity`` is who the
        quotas count it under when the manager signed the caller in itself (``user:<id>``, the
        application API); without it the request's API key names it."""
        if not self.speech_enabled:
            raise APIError(503, "speech is turned off on this server by its operator; try again later",
                           code="speech_disabled", headers={"Retry-After": "60"})
        text = payload.get("input")
        chars = len(text) if isinstance(text, str) else 0
        speed = payload.get("speed", 1.0)
        speed = float(speed) if isinstance(speed, (int, float)) and not isinstance(speed, bool) else 1.0
        try:
            grant = self.quota.admit(bearer(request), chars, speed, identity=identity)
        except APIError as exc:
            if exc.status == 429:
                self.m_quota.labels(identity or self.quota.limits.for_token(bearer(request))[0]).inc()
            raise
        try:
            return await self._speech(request, payload, ctl, grant, chars)
        except BaseException:
            grant.settle(ctl.id, False, None, 0.0, False, False)
            raise

    def key_for(self, ctl: ModelController, payload: dict[str, Any]) -> str:
        """The cache key of this request on this model, with the voice clip's content hash when
        the model's server reported one (catalog), so a replaced clip is a new key."""
        return cache_key(ctl.id, payload, self.manager.catalog.voice_hash(ctl, payload.get("voice")))

    def _hit(self, ctl: ModelController, payload: dict[str, Any], grant: Any, headers: dict[str, str]) -> CachedAnswer | None:
        """The model's stored answer to this request, ready to stream, or None."""
        assert self.cache is not None
        if not cacheable(ctl.spec, payload):
            return None
        entry = self.cache.get(self.key_for(ctl, payload))
        if entry is None:
            return None
        self.m_cache.labels("hit").inc()
        self.m_hit_bytes.inc(entry.size)
        headers = {**headers, "x-voxgate-cost-estimate": f"0 {ctl.spec.price.currency if ctl.spec.price else 'USD'}"}

        def hit_done(ok: bool) -> None:
            grant.settle(ctl.id, ok, entry.duration, 0.0, True, False)

        return CachedAnswer(entry, headers, hit_done)

    async def _speech(self, request: Request, payload: dict[str, Any], ctl: ModelController, grant: Any, chars: int) -> Any:
        use_cache = self.cache is not None and not cache_bypassed(request) and cacheable(ctl.spec, payload)
        if use_cache:
            answer = self._hit(ctl, payload, grant, {})
            if answer is not None:
                return answer
        self.m_cache.labels("miss" if use_cache else "bypass").inc()

        def skipped(s: Skip) -> None:
            self.m_fallbacks.labels(s.model, s.reason).inc()

        async def open_(hop: ModelController) -> Any:
            return await self._open(request, payload, hop)

        def fallback_hit(hop: ModelController) -> CachedAnswer | None:
            """A fallback's own stored answer (its own key): served without starting it."""
            if not use_cache:  # the same rule as for storing a fallback's answer below
                return None
            return self._hit(hop, payload, grant, {"x-voxgate-requested-model": ctl.id})

        def fallback_cached(hop: ModelController) -> bool:
            return (use_cache and self.cache is not None and cacheable(hop.spec, payload)
                    and self.cache.has(self.key_for(hop, payload)))

        routed = await route(ctl, self.manager.resolve, request.is_disconnected, open_, skipped, fallback_hit,
                             fallback_cached)
        spoke = routed.ctl
        if routed.from_cache:
            reason = routed.fallback_reason or "unknown"
            routed.response.extra["x-voxgate-fallback"] = reason
            lifecycle_event("fallback", ctl.id, to=spoke.id, reason=reason, cached=True,
                            passed=[{"model": s.model, "reason": s.reason, "waited_s": round(s.waited_s, 3)}
                                    for s in routed.skipped])
            return routed.response
        headers: dict[str, str] = {"x-voxgate-cache": "miss" if use_cache else "bypass"}
        if routed.fallback_reason:
            headers["x-voxgate-fallback"] = routed.fallback_reason
            headers["x-voxgate-requested-model"] = ctl.id
            lifecycle_event("fallback", ctl.id, to=spoke.id, reason=routed.fallback_reason,
                            passed=[{"model": s.model, "reason": s.reason, "waited_s": round(s.waited_s, 3)}
                                    for s in routed.skipped])
        estimate = cost_of(spoke.spec, chars, grant.audio_s)  # audio seconds not known yet: the text's estimate
        if estimate is not None:
            headers["x-voxgate-cost-estimate"] = f"{estimate[0]:.6f} {estimate[1]}"
        writer = None
        if use_cache and cacheable(spoke.spec, payload):
            assert self.cache is not None
            ctype = "audio/mpeg"
            inner = routed.response
            for k, v in getattr(getattr(inner, "upstream", None), "headers", []) or []:
                if k == b"content-type":
                    ctype = v.decode("latin-1")
            if isinstance(inner, ProviderResponse):
                ctype = inner.answer.content_type
            fmt = str(payload.get("response_format") or "mp3")
            if payload.get("stream_format") == "sse":
                fmt = "sse"
            writer = self.cache.writer(self.key_for(spoke, payload), spoke.id, voice_name(payload.get("voice")), fmt, ctype)

        async def complete(ok: bool, entry: Entry | None) -> None:
            if entry is not None:
                self.m_cache_stored.inc()
            if self.cache is not None and writer is not None:
                self.m_cache_bytes.set(self.cache.total_bytes())
            audio_s = entry.duration if entry is not None else None
            if audio_s is None and ok:  # not kept: pcm and wav still tell their length by their size
                ctype, head, size = tee.answer
                audio_s = duration_from_bytes(str(payload.get("response_format") or "mp3"), ctype, head, size)
            est = cost_of(spoke.spec, chars, audio_s if audio_s is not None else grant.audio_s)
            grant.settle(spoke.id, ok, audio_s, est[0] if est else 0.0, False, bool(routed.skipped))

        tee = TeeResponse(routed.response, headers, writer, complete)
        return tee

    async def _open(self, request: Request, payload: dict[str, Any], ctl: ModelController) -> Any:
        """The admitted model's answer, not yet sent: a provider call or the proxied request."""
        body_payload = {**payload, "model": ctl.spec.upstream_model or ctl.id}
        if isinstance(ctl.runtime, ProviderRuntime):
            try:
                answer = await ctl.runtime.provider.speech(body_payload)
            except ProviderError as exc:
                self.m_provider_errors.labels(ctl.id, exc.code).inc()
                raise
            return ProviderResponse(answer, ctl.release, ctl.id)
        return await open_admitted(self.manager, request, ctl, "/v1/audio/speech", json.dumps(body_payload).encode())

    def reload_limits(self) -> None:
        """Re-read VOXGATE_MANAGER_QUOTAS_FILE (raises ValueError naming the problem; the old limits stay)."""
        self.quota.limits = load_limits(self.manager.settings.quotas_file)

    # -- voices -------------------------------------------------------------------------------

    async def provider_voices(self, ctl: ModelController, method: str, rest: str) -> Any:
        """/v1/audio/voices of a provider model: its voice list (ElevenLabs) or an empty one."""
        from fastapi.responses import JSONResponse

        from voxgate_manager.providers.base import ProviderError

        if method != "GET" or rest:
            raise APIError(405, f"model {ctl.id!r} is a provider ({ctl.runtime.kind}); its voices are managed on its side",
                           code="method_not_allowed")
        assert isinstance(ctl.runtime, ProviderRuntime)
        try:
            voices = await ctl.runtime.provider.voices()
        except ProviderError as exc:
            raise APIError(exc.status, exc.message, code=exc.code) from None
        return JSONResponse({"object": "list", "model": ctl.id, "voices": voices or []})

    def voices_changed(self, model: str, voice: str | None) -> None:
        """A voice of ``model`` is being added, replaced or removed through the manager: the
        cached answers spoken with it (all of the model's when the voice is not named) go, so a
        replaced clip is never answered with the old one's audio."""
        if self.cache is None:
            return
        n = self.cache.purge(model=model, voice=voice)
        if n:
            log.info("cache: %d answer(s) of %s%s purged after a voice change", n, model, f" voice {voice}" if voice else "")
        self.m_cache_bytes.set(self.cache.total_bytes())

    # -- admin --------------------------------------------------------------------------------

    def cache_status(self, model: str | None = None, limit: int = 100) -> dict[str, Any]:
        if self.cache is None:
            return {"enabled": False, "note": "set VOXGATE_MANAGER_DATA_DIR to turn the response cache on"}
        return {"enabled": True, **self.cache.stats(), "entries_list": self.cache.entries(model, limit)}

    def cache_purge(self, model: str | None = None, key: str | None = None) -> dict[str, Any]:
        if self.cache is None:
            return {"enabled": False, "purged": 0}
        n = self.cache.purge(model=model, key=key)
        self.m_cache_bytes.set(self.cache.total_bytes())
        return {"enabled": True, "purged": n}

    def usage_report(self, key: str | None = None, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        rows = self.usage.report(key, since, until)
        totals: dict[str, dict[str, float]] = {}
        for r in rows:
            t = totals.setdefault(r["key_id"], {"requests": 0, "chars": 0, "audio_seconds": 0.0, "cost": 0.0})
            for k in t:
                t[k] += r[k] or 0
        return {"usage": rows, "totals": totals, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.conn.close()
