"""The manager's own catalog routes: ``/v1/models`` (every id and alias, OpenAI clients look
``tts-1`` up there), ``/v1/audio/models`` and ``/v1/audio/voices`` (Open WebUI's shapes), and
``/health`` (whether anything can be served, and how).

None of them starts a model or counts as work. A model that is ready is asked for its voices (not
counted as work either, so it does not keep the model alive); any other answer comes from the
catalog. ``VOXGATE_PUBLIC_CATALOG=1`` serves the three GET lists without a key, because Open WebUI
sends them without one and falls back to OpenAI's six voices when they fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from voxgate_manager.config import DockerRuntime
from voxgate_manager.errors import APIError
from voxgate_manager.lifecycle.machine import State

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController
    from voxgate_manager.manager import Manager


def serving(manager: "Manager", ctl: "ModelController", now: float) -> tuple[str, str | None]:
    """How a request for this model would be served now: ``ready``, ``startable`` (stopped, or
    failed and past its backoff: a request starts it), ``parked`` (a request wakes it), ``busy``
    (starting or draining: a request waits), or ``unavailable`` with the reason."""
    state = ctl.state
    if state is State.READY:
        return "ready", None
    if isinstance(ctl.spec.runtime, DockerRuntime) and manager.docker.client is None:
        return "unavailable", manager.docker.error or "the Docker engine is not reachable"
    if state is State.STOPPED:
        return "startable", None
    if state is State.FAILED:
        if ctl.machine.retry_at <= now:
            return "startable", ctl.machine.last_error or None
        return "unavailable", f"backing off after a failure ({ctl.machine.last_error or 'start failed'}); " \
                              f"retry in {ctl.machine.retry_at - now:.0f}s"
    if state.value == "parked":  # kept warm off the GPU: a request wakes it
        return "parked", None
    return "busy", None  # starting, draining (and any later waiting state): requests are held


def catalog_router(manager: "Manager", check_key: Callable[[Request], None]) -> APIRouter:
    """``check_key``: the OpenAI routes' key check (configured keys, per-user keys, user tokens)."""
    router = APIRouter()
    created = int(time.time())
    settings = manager.settings
    catalog = manager.catalog

    def listing_key(request: Request) -> None:
        if not settings.public_catalog:
            check_key(request)

    def model_entry(name: str, ctl: "ModelController") -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": name, "object": "model", "created": created, "owned_by": "voxgate", "root": ctl.id,
            "aliases": ctl.spec.aliases, "state": ctl.state.value, "runtime": ctl.runtime.kind,
        }
        if name != ctl.id:
            entry["alias_of"] = ctl.id
        if ctl.spec.fallback:
            entry["fallback"] = ctl.spec.fallback
        if ctl.spec.price:
            entry["price"] = ctl.spec.price.model_dump()
        caps = catalog.capabilities(ctl)
        entry["capabilities"] = caps  # as the model's server reported them when it last ran; null if never
        entry["voices"] = [v["id"] for v in catalog.voices(ctl)]
        return entry

    def controller(name: str | None) -> "ModelController":
        ctl = manager.resolve(name)
        if ctl is None:
            raise APIError(404, f"The model '{name}' does not exist.", code="model_not_found", param="model")
        return ctl

    @router.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        listing_key(request)
        data = [model_entry(name, ctl) for ctl in manager.controllers.values() for name in ctl.spec.names]
        return {"object": "list", "data": data}

    @router.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        listing_key(request)
        ctl = manager.resolve(model_id) if model_id else None
        if ctl is None:
            raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model")
        return model_entry(model_id, ctl)

    @router.get("/v1/audio/models")
    async def audio_models(request: Request) -> dict[str, Any]:
        """Open WebUI's model list: ``{"models": [{"id"}]}``, aliases included (``tts-1``)."""
        listing_key(request)
        return {"models": [{"id": name, "name": name, "root": ctl.id, "state": ctl.state.value}
                           for ctl in manager.controllers.values() for name in ctl.spec.names]}

    @router.get("/v1/audio/voices")
    async def audio_voices(request: Request) -> JSONResponse:
        """One model's voices (``?model=`` or ``X-Voxgate-Model``), or every model's (the default
        model's first; a voice id listed once)."""
        listing_key(request)
        named = request.query_params.get("model") or request.headers.get("x-voxgate-model")
        if named and getattr(controller(named).runtime, "provider", None) is not None:
            # someone else's API (ElevenLabs): its own voice list, names mapped to its voice ids
            return await manager.gateway.provider_voices(controller(named), "GET", "")
        ctls = [controller(named)] if named else [c for c in manager.controllers.values()
                                                  if getattr(c.runtime, "provider", None) is None]
        if not named:
            default = manager.resolve(None)
            ctls.sort(key=lambda c: c is not default)
        live = True
        for ctl in ctls:
            if ctl.state is State.READY:
                try:
                    await catalog.refresh(ctl)
                    continue
                except Exception:
                    pass
            live = False
        voices: list[dict[str, Any]] = []
        seen: set[str] = set()
        for ctl in ctls:
            for v in catalog.voices(ctl):
                if v["id"] not in seen:
                    seen.add(v["id"])
                    voices.append(v)
        body: dict[str, Any] = {"object": "list", "voices": voices}
        headers: dict[str, str] = {}
        if named:
            ctl = ctls[0]
            body.update(model=ctl.id, state=ctl.state.value, source=catalog.source(ctl))
            headers["x-voxgate-model-state"] = ctl.state.value
            if not voices:
                body["note"] = "the model is not running; its voices are listed once it has served a request"
        if not live and voices:
            headers["x-voxgate-cached"] = "true"
        return JSONResponse(body, headers=headers)

    @router.get("/health")
    async def health() -> JSONResponse:
        """Always 200 while the manager runs; ``can_serve`` says whether a request would get audio."""
        now = time.monotonic()
        ways: dict[str, dict[str, Any]] = {}
        for ctl in manager.controllers.values():
            how, why = serving(manager, ctl, now)
            ways[ctl.id] = {"state": ctl.state.value, "serving": how, **({"reason": why} if why else {})}
        ready = [k for k, v in ways.items() if v["serving"] == "ready"]
        startable = [k for k, v in ways.items() if v["serving"] == "startable"]
        starting = [k for k, v in ways.items() if v["serving"] == "busy"]
        parked = [k for k, v in ways.items() if v["serving"] == "parked"]
        can_serve = bool(ready or startable or starting or parked)
        return JSONResponse({
            "status": "ok" if can_serve else "unavailable",
            "can_serve": can_serve,
            "ready": ready,
            "startable": startable,
            "starting": starting,
            "parked": parked,
            "models": {c.id: c.state.value for c in manager.controllers.values()},
            "serving": ways,
            "wyoming": getattr(manager, "wyoming_address", None),  # "host:port" while it listens
        })

    return router
