"""The public API clients talk to: OpenAI routes proxied by the body's model, plus the manager's own
/v1/models, /health and /metrics (which never start a model nor keep it alive)."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from voxgate_manager.api.catalog import catalog_router
from voxgate_manager.api.request_checks import (check_json_content_type, impossible_voice_id, parse_json_object,
                                                require_model, voice_not_found, voice_path)
from voxgate_manager.errors import APIError, error_response, install_error_handlers
from voxgate_manager.lifecycle.controller import ClientGone, ModelController, Rejected
from voxgate_manager.lifecycle.machine import State
from voxgate_manager.manager import Manager
from voxgate_manager.routing.admitted import ModelDied, open_admitted
from voxgate_manager.transport.proxy import upstream_headers
from voxgate_manager.voices import apply_voice_preset

SPEECH_MAX_BYTES = 1024 * 1024  # an OpenAI speech body is a few KiB of JSON


def check_key(request: Request, keys: list[str], verify: Callable[[str], bool] | None = None,
              required: bool = False) -> None:
    """A configured key, or one ``verify`` accepts (per-user API keys, see api/app_api.py)."""
    if not keys and not required:
        return
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if token and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
        return
    if not token or verify is None or not verify(token):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")


async def read_body(request: Request, limit: int, timeout_s: float = 0) -> bytes:
    """The whole body (from ASGI messages directly: a small one is one message, no copy), within
    ``timeout_s`` (0: no bound): a client sending its body a byte at a time gets 408."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
    if timeout_s <= 0:
        return await _read_body(request, limit)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(request, limit)
    except TimeoutError:
        raise APIError(408, f"The request body was not received within {timeout_s:g}s "
                            "(VOXGATE_MANAGER_BODY_TIMEOUT_S).", code="request_timeout",
                       headers={"Connection": "close"}) from None


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
        if not msg.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def upstream_query(query_string: bytes, ctl: ModelController) -> str:
    """The query string as the model server should see it: a ``model`` parameter names the model
    as the server knows it (``upstream_model``), not by the manager's own id or alias."""
    text = query_string.decode("latin-1")
    if "model=" not in text:
        return text
    target = ctl.spec.upstream_model or ctl.id
    return urlencode([(k, target if k == "model" else v) for k, v in parse_qsl(text, keep_blank_values=True)])


def create_app(manager: Manager) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The public ASGI app: speech requests take a direct path (they are the hot one: every
    middleware layer is latency added to each request); everything else goes through FastAPI."""
    api, speech = _create_api(manager)
    log = logging.getLogger("voxgate.manager")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):  # /v1/models/ is /v1/models: served, not a 307
            scope = dict(scope, path=path.rstrip("/") or "/")
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/audio/speech":
            try:
                response = await speech(Request(scope, receive))
            except ClientGone:
                response = Response(status_code=499)
            except APIError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("unhandled error")
                response = error_response(APIError(500, "The manager had an error while processing your request."))
            await response(scope, receive, send)
            return
        await api(scope, receive, send)

    app.api = api  # type: ignore[attr-defined]
    app.app_services = api.state.app_services  # type: ignore[attr-defined]
    if manager.settings.cors_origins:  # other web apps on the LAN calling the API from a browser
        from starlette.middleware.cors import CORSMiddleware

        cors = CORSMiddleware(app, allow_origins=manager.settings.cors_origins, allow_methods=["*"],
                              allow_headers=["*"], expose_headers=["x-voxgate-model", "retry-after"])
        cors.api, cors.app_services = api, app.app_services  # type: ignore[attr-defined]
        return cors
    return app


def _create_api(manager: Manager) -> tuple[FastAPI, Callable[[Request], Awaitable[Any]]]:
    app = FastAPI(title="voxgate-manager", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    install_error_handlers(app)
    from voxgate_manager.api import ws_proxy

    # GET /v1/audio/speech/ws, relayed to the model's server; per-user keys as on the HTTP routes
    # (``services`` is bound below, before any socket can open)
    ws_proxy.install(app, manager, lambda token: services.verify_openai_token(token))
    keys = manager.settings.api_keys
    from voxgate_manager.api.app_api import install_app_api

    services = install_app_api(app, manager)  # /api/auth, /api/tts, the studio at /

    def check(request: Request) -> None:
        check_key(request, keys, services.verify_openai_token, manager.settings.require_key)

    def controller_for(name: str | None) -> ModelController:
        ctl = manager.resolve(name)
        if ctl is None:
            raise APIError(404, f"The model '{name}' does not exist.", code="model_not_found", param="model")
        return ctl

    async def proxy_work(request: Request, ctl: ModelController, body: bytes, path: str) -> Any:
        """A request that needs the model: hold it until ready, proxy it, count it as work.
        Sent with the lean client (voxgate_manager.transport.h1): this is the per-request hot path.

        A model the manager thinks ready that cannot be connected to is health-checked at once; if
        it is dead, the request (nothing of it was sent) goes once more through the lifecycle, which
        starts the model again. A model that hangs (liveness) aborts the request with a 502."""
        for attempt in (1, 2):
            try:
                ctl = await ctl.acquire(request.is_disconnected)
            except Rejected as exc:
                raise APIError(exc.status, exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)}) from None
            except ClientGone:
                return Response(status_code=499)
            qs = upstream_query(request.scope.get("query_string", b""), ctl)
            target = path + "?" + qs if qs else path
            try:
                return await open_admitted(manager, request, ctl, target, body, request.method)
            except ModelDied:
                ctl.release(ok=False)
                if attempt == 1:
                    continue  # the lifecycle starts it again for this request
                raise
            except BaseException:
                ctl.release(ok=False)
                raise
        raise AssertionError("unreachable")

    # -- the manager's own answers ------------------------------------------------------------

    app.include_router(catalog_router(manager, check))  # /health, /v1/models, /v1/audio/models, GET /v1/audio/voices

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(manager.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- speech: the only work that starts a model --------------------------------------------

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Any:
        check(request)
        check_json_content_type(request.headers.get("content-type"))
        body = await read_body(request, SPEECH_MAX_BYTES, manager.settings.body_timeout_s)
        payload = parse_json_object(body)
        ctl = controller_for(require_model(payload))
        target = ctl.spec.upstream_model or ctl.id  # aliases are the manager's: the server knows the id
        rewrite = apply_voice_preset(ctl.spec.voice_presets, payload) is not None
        if "response_format" not in payload:  # OpenAI's default; Open WebUI caches the answer as .mp3
            payload["response_format"] = "mp3"
            rewrite = True
        if payload.get("model") != target or rewrite:
            payload["model"] = target
            body = json.dumps(payload).encode()
        # feature flag, quotas, cache, fallback chains, providers: voxgate_manager/routing/gateway.py
        return await manager.gateway.speech(request, payload, ctl)

    # -- voices: listing never starts a model; changes are work --------------------------------

    @app.api_route("/v1/audio/voices", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.api_route("/v1/audio/voices/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def voices(request: Request, rest: str = "") -> Any:
        check(request)
        ctl = controller_for(request.query_params.get("model") or request.headers.get("x-voxgate-model"))
        if impossible_voice_id(rest):
            raise voice_not_found(rest)
        path = voice_path(rest)
        if getattr(ctl.runtime, "provider", None) is not None:  # someone else's API: its own voice list
            return await manager.gateway.provider_voices(ctl, request.method, rest)
        if request.method != "GET":
            manager.gateway.voices_changed(ctl.id, rest.split("/")[0] or None)  # cached answers in that voice go
            try:
                body = await read_body(request, manager.settings.max_body_bytes, manager.settings.body_timeout_s)
            except ClientGone:
                return Response(status_code=499)
            answer = await proxy_work(request, ctl, body, path)
            manager.catalog.stale(ctl.id)  # the server has answered: its new list (clip hashes) is read next tick
            return answer
        return await list_voices(request, ctl, path)

    async def list_voices(request: Request, ctl: ModelController, path: str) -> Response:
        """Ask the model only if it is ready (without counting as work); else the last answer seen."""
        cache_key = path + "?" + str(request.query_params)
        if ctl.state is State.READY:
            try:
                qs = upstream_query(request.scope.get("query_string", b""), ctl)
                resp = await manager.http.get(
                    ctl.runtime.base_url + path + ("?" + qs if qs else ""),
                    headers=upstream_headers(request.headers, ctl.spec.api_key), timeout=10.0,
                )
                if resp.status_code < 500:
                    if resp.status_code == 200:
                        ctl.voices_cache = (200, resp.content, cache_key)
                    return Response(resp.content, status_code=resp.status_code,
                                    media_type=resp.headers.get("content-type", "application/json"),
                                    headers={"x-voxgate-model-state": ctl.state.value})
            except Exception:
                pass
        if ctl.voices_cache is not None and ctl.voices_cache[2] == cache_key:
            return Response(ctl.voices_cache[1], media_type="application/json",
                            headers={"x-voxgate-model-state": ctl.state.value, "x-voxgate-cached": "true"})
        if path != "/v1/audio/voices":
            raise APIError(503, f"model {ctl.id!r} is {ctl.state.value}; voice details are known once it has run",
                           code="model_not_running", headers={"Retry-After": str(ctl.spec.retry_after_s)})
        return JSONResponse({"object": "list", "voices": [], "model": ctl.id, "state": ctl.state.value,
                             "note": "the model is not running; its voices are listed once it has served a request"},
                            headers={"x-voxgate-model-state": ctl.state.value})

    return app, speech
