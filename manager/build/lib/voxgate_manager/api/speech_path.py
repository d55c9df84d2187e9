"""The manager's one request path for speech made on a user's behalf (studio, jobs, segments):
resolve the model, take a ticket from its lifecycle (start it, hold, queue, limits), send the
request with the proxy's own client, and give the slot back when the answer is read.

The same steps as ``/v1/audio/speech`` in app.py, so idle timers, metrics and errors are the same
whichever door a request came in by."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from voxgate_manager import h1
from voxgate_manager.controller import ModelController, Rejected
from voxgate_manager.errors import APIError
from voxgate_manager.manager import Manager
from voxgate_manager.proxy import StreamedProxyResponse, open_upstream

_JSON = [(b"content-type", b"application/json")]


def controller(manager: Manager, model_id: str | None) -> ModelController:
    ctl = manager.resolve(model_id)
    if ctl is None:
        raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model_id")
    return ctl


async def _never_gone() -> bool:
    return False


async def open_speech(manager: Manager, ctl: ModelController, payload: dict[str, Any],
                      is_disconnected: Callable[[], Awaitable[bool]] = _never_gone) -> h1.Response:
    """An admitted, opened upstream answer; the caller must call ``ctl.release(ok)`` exactly once."""
    try:
        await ctl.acquire(is_disconnected)
    except Rejected as exc:
        raise APIError(exc.status, exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)}) from None
    body = json.dumps({**payload, "model": ctl.spec.upstream_model or ctl.id}).encode()
    headers = list(_JSON)
    if ctl.spec.api_key:
        headers.append((b"authorization", b"Bearer " + ctl.spec.api_key.encode()))
    try:
        return await open_upstream(manager.h1, "POST", ctl.runtime.base_url, "/v1/audio/speech",
                                   headers=headers, content=body, model=ctl.id)
    except BaseException:
        ctl.release(ok=False)
        raise


async def stream_speech(manager: Manager, ctl: ModelController, payload: dict[str, Any],
                        is_disconnected: Callable[[], Awaitable[bool]]) -> StreamedProxyResponse:
    """The answer relayed to the client chunk by chunk (audio starts playing while it is made)."""
    up = await open_speech(manager, ctl, payload, is_disconnected)
    return StreamedProxyResponse(up, ctl.release, ctl.id)


async def synthesize(manager: Manager, ctl: ModelController, payload: dict[str, Any]) -> bytes:
    """The whole answer's body; a model error becomes an APIError with the model's message."""
    up = await open_speech(manager, ctl, payload)
    ok = False
    try:
        parts: list[bytes] = []
        while (chunk := await up.next_chunk()) is not None:
            parts.append(chunk)
        data = b"".join(parts)
        ok = up.status < 500
    except h1.UpstreamError as exc:
        raise APIError(502, f"model {ctl.id!r} stopped answering mid-response: {exc}", code="upstream_aborted") from None
    finally:
        up.release()
        ctl.release(ok)
    if up.status != 200:
        try:
            err = json.loads(data)["error"]
            message, code, param = err.get("message", ""), err.get("code"), err.get("param")
        except (ValueError, KeyError, TypeError):
            message, code, param = data[:200].decode(errors="replace"), None, None
        raise APIError(up.status if up.status < 500 else 502, message or f"model {ctl.id!r} answered {up.status}",
                       code=code or "upstream_error", param=param)
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
