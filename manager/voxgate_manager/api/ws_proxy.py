"""The server's speech WebSocket (``/v1/audio/speech/ws``) through the manager.

The model is chosen when the socket opens (``?model=``, default the manager's default model),
because a socket is one conversation with one engine. Opening it is work: it starts the model
if it is stopped (held like any request, up to ``hold_max_s``) and counts as one request in
flight until it closes, so the idle timer does not stop a model under an open socket. Messages
are relayed both ways unchanged, except that a ``model`` in ``generate``/``append`` is checked
against the socket's model and rewritten to the server's id (the manager's aliases are its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from voxgate_manager.lifecycle.controller import ClientGone, Rejected
from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.ws")

PATH = "/v1/audio/speech/ws"


def _error(message: str, code: str, status: int, param: str | None = None) -> str:
    return json.dumps({"type": "error", "status": status,
                       "error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                                 "param": param, "code": code}})


async def _authorized(ws: WebSocket, keys: list[str], verify: Callable[[str], bool] | None, required: bool) -> bool:
    """The HTTP routes' rule (app.check_key): a configured key, or a per-user API key that
    ``verify`` accepts; open only when no key is configured and none is required."""
    if not keys and not required:
        return True
    header = ws.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ws.query_params.get("api_key", "")
    if token and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys if k):
        return True
    # the accounts store is SQLite: off the event loop
    return bool(token) and verify is not None and await asyncio.to_thread(verify, token)


def install(app: FastAPI, manager: Manager, verify: Callable[[str], bool] | None = None) -> None:
    """``verify``: accepts per-user API keys (api/app_api.py), as on the HTTP routes."""

    @app.websocket(PATH)
    async def speech_ws(ws: WebSocket) -> None:
        if not await _authorized(ws, manager.settings.api_keys, verify, manager.settings.require_key):
            await ws.close(code=1008, reason="invalid API key")
            return
        await ws.accept()
        name = ws.query_params.get("model")
        ctl = manager.resolve(name)
        if ctl is None:
            await ws.send_text(_error(f"The model '{name}' does not exist.", "model_not_found", 404, "model"))
            await ws.close(code=1008)
            return
        try:
            await ctl.acquire()
        except Rejected as exc:
            await ws.send_text(_error(exc.message, exc.code, exc.status))
            await ws.close(code=1013)
            return
        except ClientGone:
            return
        ok = True
        try:
            ok = await _relay(ws, manager, ctl)
        finally:
            ctl.release(ok=ok)


async def _relay(ws: WebSocket, manager: Manager, ctl: Any) -> bool:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    target = ctl.spec.upstream_model or ctl.id
    url = ctl.runtime.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + PATH
    headers = {"Authorization": f"Bearer {ctl.spec.api_key}"} if ctl.spec.api_key else {}
    try:
        upstream = await connect(url, additional_headers=headers, max_size=None, open_timeout=10)
    except Exception as exc:  # noqa: BLE001 - the model's server refused or vanished
        await ws.send_text(_error(f"The model '{ctl.id}' did not accept the WebSocket: {exc}", "upstream_error", 502))
        await ws.close(code=1011)
        return False

    def rewrite(text: str) -> str | None:
        """The message to forward, or None after answering a model mismatch here."""
        try:
            message = json.loads(text)
        except ValueError:
            return text  # the server answers bad JSON itself
        if not isinstance(message, dict) or message.get("action") not in ("generate", "append"):
            return text
        asked = message.get("model")
        if asked is None or asked == target:
            message["model"] = target
            return json.dumps(message)
        other = manager.resolve(asked) if isinstance(asked, str) else None
        if other is not ctl:
            return None
        message["model"] = target
        return json.dumps(message)

    async def client_to_upstream() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                forwarded = rewrite(msg["text"])
                if forwarded is None:
                    await ws.send_text(_error(f"This socket speaks with model '{ctl.id}'; open another with "
                                              "?model= for a different one.", "model_mismatch", 400, "model"))
                    continue
                await upstream.send(forwarded)
            elif msg.get("bytes") is not None:
                await upstream.send(msg["bytes"])

    async def upstream_to_client() -> None:
        async for msg in upstream:
            if isinstance(msg, bytes):
                await ws.send_bytes(msg)
            else:
                await ws.send_text(msg)

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    ok = True
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, ConnectionClosed, RuntimeError)):
                ok = False
                log.warning("websocket relay for %s ended: %r", ctl.id, exc)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await upstream.close()  # the server cancels what it was making for this socket
        with contextlib.suppress(Exception):
            await ws.close()
    return ok
