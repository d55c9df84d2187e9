"""The application API's door to the manager's one request path for speech (studio, jobs,
segments): every request goes through ``Gateway.speech`` (routing/gateway.py), so the feature
flag, quotas, the response cache, fallback chains, providers and the lifecycle's fault handling
are the same as for ``/v1/audio/speech``, whichever door a request came in by.

Quotas count a signed-in user's requests under ``user:<id>`` (their account id), whether they
came with a session token or one of their API keys. Voice uploads and deletes (``request_model``)
are not speech: they are admitted by the model's lifecycle and proxied whole."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import Message

from voxgate_manager.errors import APIError
from voxgate_manager.lifecycle.controller import ModelController, Rejected
from voxgate_manager.manager import Manager
from voxgate_manager.transport import h1
from voxgate_manager.transport.proxy import UpstreamAborted, open_upstream

_JSON = (b"content-type", b"application/json")
# what the client may say about the cache; everything else of the browser's request stays here
_PASSED = frozenset({b"cache-control", b"x-voxgate-cache", b"user-agent"})


def controller(manager: Manager, model_id: str | None) -> ModelController:
    ctl = manager.resolve(model_id)
    if ctl is None:
        raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model_id")
    return ctl


def user_identity(user_id: int) -> str:
    """The stable name a user's usage and limits go under (a rename does not change it)."""
    return f"user:{user_id}"


async def _never_gone() -> bool:
    return False


async def _disconnected_never() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def speech_request(request: Request | None) -> Request:
    """The request the gateway sees: the client's connection (so a browser that leaves is noticed)
    with only JSON's content type and the cache's headers; no cookies or tokens go to the model.
    Without a client (a job's chunk): a request of the manager's own."""
    if request is None:
        scope = {"type": "http", "method": "POST", "path": "/api/tts/jobs", "headers": [_JSON], "query_string": b""}
        return Request(scope, _disconnected_never)
    headers = [_JSON, *((k, v) for k, v in request.scope["headers"] if k in _PASSED)]
    return Request({**request.scope, "headers": headers}, request.receive)


async def stream_speech(manager: Manager, ctl: ModelController, payload: dict[str, Any], request: Request,
                        user_id: int) -> Any:
    """The answer relayed to the client chunk by chunk (audio starts playing while it is made), with
    the gateway's headers (x-voxgate-cache, -fallback, -model, -cost-estimate)."""
    return await manager.gateway.speech(speech_request(request), payload, ctl, identity=user_identity(user_id))


async def synthesize(manager: Manager, ctl: ModelController, payload: dict[str, Any], user_id: int,
                     request: Request | None = None) -> bytes:
    """The whole answer's body; a refusal (quota, busy, starting) or a model error becomes an
    APIError with its status, message and Retry-After, which a job's retry loop reads."""
    req = speech_request(request)
    answer = await manager.gateway.speech(req, payload, ctl, identity=user_identity(user_id))
    head: dict[str, Any] = {}
    parts: list[bytes] = []

    async def collect(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            head.update(msg)
        elif msg["type"] == "http.response.body":
            parts.append(msg.get("body", b""))

    try:
        await answer(req.scope, req.receive, collect)
    except UpstreamAborted as exc:
        raise APIError(502, str(exc), code="upstream_aborted") from None
    data = b"".join(parts)
    status = int(head.get("status", 502))
    if status != 200:
        retry = next((v.decode("latin-1") for k, v in head.get("headers", []) if k == b"retry-after"), None)
        try:
            err = json.loads(data)["error"]
            message, code, param = err.get("message", ""), err.get("code"), err.get("param")
        except (ValueError, KeyError, TypeError):
            message, code, param = data[:200].decode(errors="replace"), None, None
        raise APIError(status if status < 500 or status == 503 else 502,
                       message or f"model {ctl.id!r} answered {status}", code=code or "upstream_error", param=param,
                       headers={"Retry-After": retry} if retry else None)
    return data


async def request_model(manager: Manager, ctl: ModelController, method: str, path: str, *, body: bytes = b"",
                        content_type: str | None = None) -> tuple[int, str, bytes]:
    """Any other work on a model (voice uploads, deletes): admitted like speech, read whole."""
    try:
        await ctl.acquire(_never_gone)
    except Rejected as exc:
        raise APIError(exc.status, exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)}) from None
    headers: list[tuple[bytes, bytes]] = []
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if ctl.spec.api_key:
        headers.append((b"authorization", b"Bearer " + ctl.spec.api_key.encode()))
    ok = False
    try:
        up = await open_upstream(manager.h1, method, ctl.runtime.base_url, path, headers=headers, content=body, model=ctl.id)
        try:
            parts = []
            while (chunk := await up.next_chunk()) is not None:
                parts.append(chunk)
        except h1.UpstreamError as exc:
            raise APIError(502, f"model {ctl.id!r} stopped answering mid-response: {exc}", code="upstream_aborted") from None
        finally:
            up.release()
        ok = up.status < 500
    finally:
        ctl.release(ok)
    media = next((v.decode("latin-1") for k, v in up.headers if k == b"content-type"), "application/octet-stream")
    return up.status, media, b"".join(parts)
