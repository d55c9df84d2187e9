"""Forward one request to a model's server, streaming the answer chunk by chunk (never buffered).

The admitted request stays in flight until its last byte is sent or the client leaves, so a long
stream keeps the model busy. If the upstream dies mid-body the client connection is aborted
(no terminating chunk): the client sees an error, never a silently truncated audio file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from voxgate_manager.errors import APIError

log = logging.getLogger("voxgate.manager.proxy")

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-api-key",
}


class UpstreamAborted(Exception):
    """The model's server went away mid-response; the client connection is aborted on purpose."""


def upstream_headers(headers: Any, api_key: str | None) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


class StreamedProxyResponse(Response):
    """An ASGI response relaying an httpx streaming response; ``on_done(ok)`` runs exactly once."""

    def __init__(self, upstream: httpx.Response, on_done: Callable[[bool], None], model: str) -> None:  # noqa: D107
        self.status_code = upstream.status_code
        self.background = None
        self.upstream = upstream
        self.on_done = on_done
        self.model = model

    def _headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in self.upstream.headers.multi_items()
            if (k.lower() not in HOP_BY_HOP or k.lower() == "content-length") and k.lower() not in ("x-accel-buffering", "x-voxgate-model")
        ]
        out.append((b"x-accel-buffering", b"no"))  # nginx & co. in front must not buffer audio/SSE
        out.append((b"x-voxgate-model", self.model.encode()))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ok = True
        client_gone = False
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    nonlocal client_gone
                    while True:
                        msg = await receive()
                        if msg["type"] == "http.disconnect":
                            client_gone = True
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_disconnect)
                await send({"type": "http.response.start", "status": self.upstream.status_code, "headers": self._headers()})
                try:
                    async for chunk in self.upstream.aiter_raw():
                        if chunk:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx.HTTPError as exc:
                    ok = False
                    raise UpstreamAborted(f"model {self.model!r} stopped answering mid-response: {type(exc).__name__}") from None
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except* UpstreamAborted as eg:
            raise eg.exceptions[0] from None
        except* OSError:
            client_gone = True
        finally:
            await self.upstream.aclose()
            self.on_done(ok and self.upstream.status_code < 500)
            if client_gone:
                log.debug("client left during a %s response", self.model)


async def open_upstream(http: httpx.AsyncClient, method: str, url: str, *, headers: dict[str, str], content: bytes,
                        params: Any, model: str) -> httpx.Response:
    req = http.build_request(method, url, headers=headers, content=content, params=params)
    try:
        return await http.send(req, stream=True)
    except httpx.HTTPError as exc:
        raise APIError(502, f"model {model!r} did not answer: {type(exc).__name__}", code="upstream_unreachable") from None


class QuietAbortFilter(logging.Filter):
    """uvicorn logs a traceback for any exception after a response started; an aborted upstream is
    expected (and already logged as a lifecycle event), so keep it to one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None and not isinstance(exc, UpstreamAborted):
            exc = exc.__cause__ or exc.__context__ if not isinstance(exc, BaseExceptionGroup) else (exc.exceptions[0] if exc.exceptions else None)
        if isinstance(exc, UpstreamAborted):
            record.msg = f"aborted the client connection: {exc}"
            record.args = ()
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
