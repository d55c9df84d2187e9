"""Forward one request to a model's server, streaming the answer chunk by chunk (never buffered).

The admitted request stays in flight until its last byte is sent or the client leaves, so a long
stream keeps the model busy. If the upstream dies mid-body the client connection is aborted
(no terminating chunk): the client sees an error, never a silently truncated audio file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from voxgate_manager.errors import APIError
from voxgate_manager.transport import h1

log = logging.getLogger("voxgate.manager.proxy")

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-api-key",
    "expect",  # the manager read the whole body already; a 100-continue is not the model's to answer
}
_HOP_BY_HOP_B = frozenset(h.encode() for h in HOP_BY_HOP)
# answer headers not relayed: hop-by-hop ones (content-length is kept: it is the body's) and the ones
# this proxy sets itself; uvicorn adds its own date and server, a second copy would be a duplicate
_DROP_FROM_ANSWER = (_HOP_BY_HOP_B - {b"content-length"}) | {b"x-accel-buffering", b"x-voxgate-model", b"date", b"server"}


class UpstreamAborted(Exception):
    """The model's server went away mid-response; the client connection is aborted on purpose."""


class UpstreamUnreachable(APIError):
    """502 before anything was sent: the model's server could not be connected to (safe to retry)."""


def upstream_headers(headers: Any, api_key: str | None) -> dict[str, str]:
    """For httpx requests (voice lists): the client's headers less hop-by-hop ones and its key."""
    out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


def raw_upstream_headers(raw: Iterable[tuple[bytes, bytes]], auth: bytes | None) -> h1.Headers:
    """The same from ASGI's raw (lower-case) header list, for the lean client; ``auth`` is the whole
    authorization header value for the model's own key."""
    out = [(k, v) for k, v in raw if k not in _HOP_BY_HOP_B]
    if auth:
        out.append((b"authorization", auth))
    return out


class StreamedProxyResponse(Response):
    """An ASGI response relaying an upstream answer chunk by chunk; ``on_done(ok)`` runs exactly once.

    No task group per response: a client that leaves is noticed by one receive() waiter, started
    only when a streamed (chunked) answer has to wait for the upstream (a body with a length is
    already made, so there is nothing to stop early). A starlette Response (its __init__ unused)
    so FastAPI routes (the voice routes) return it as it is."""

    def __init__(self, upstream: h1.Response, on_done: Callable[[bool, str], None], model: str,  # noqa: D107
                 aborts: set[Callable[[str], None]] | None = None) -> None:
        self.status_code = upstream.status
        self.background = None
        self.upstream = upstream
        self.on_done = on_done
        self.model = model
        self.aborts = aborts  # the model's in-flight abort hooks: a hung model aborts this stream
        self.aborted: str | None = None

    def abort(self, why: str) -> None:
        self.aborted = why
        self.upstream.interrupt()

    def _headers(self) -> list[tuple[bytes, bytes]]:
        out = [(k, v) for k, v in self.upstream.headers if k not in _DROP_FROM_ANSWER]
        out.append((b"x-accel-buffering", b"no"))  # nginx & co. in front must not buffer audio/SSE
        out.append((b"x-voxgate-model", self.model.encode()))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        up = self.upstream
        ok = True
        client_gone = False
        watcher: asyncio.Task[Any] | None = None
        if self.aborts is not None:
            self.aborts.add(self.abort)
        try:
            await send({"type": "http.response.start", "status": up.status, "headers": self._headers()})
            while True:
                if watcher is None and up.chunked and not up.buffered():
                    watcher = asyncio.ensure_future(receive())
                    watcher.add_done_callback(lambda t: _client_left(t) and up.interrupt())
                try:
                    chunk = await up.next_chunk()
                except h1.UpstreamError as exc:
                    ok = False
                    raise UpstreamAborted(f"model {self.model!r} stopped answering mid-response: {exc}") from None
                if chunk is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    break
                last = up.at_end()  # the end came in the same read: one write to the client, not two
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    break
        except h1.Interrupted:
            if self.aborted is not None:
                ok = False
                raise UpstreamAborted(f"model {self.model!r} aborted mid-response: {self.aborted}") from None
            client_gone = True
        except OSError:
            client_gone = True
        finally:
            if self.aborts is not None:
                self.aborts.discard(self.abort)
            if watcher is not None and not watcher.done():
                watcher.cancel()
            up.release()
            ok = ok and up.status < 500
            outcome = ("client_gone" if client_gone else "error" if not ok else "client_error" if up.status >= 400 else "ok")
            self.on_done(ok, outcome)
            if client_gone:
                log.debug("client left during a %s response", self.model)


def _client_left(task: asyncio.Future[Any]) -> bool:
    if task.cancelled():
        return False
    return task.exception() is not None or task.result().get("type") == "http.disconnect"


async def open_upstream(pool: h1.Pool, method: str, base_url: str, target: str, *, headers: h1.Headers,
                        content: bytes, model: str) -> h1.Response:
    try:
        return await pool.request(base_url, method, target, headers, content)
    except h1.ConnectFailed as exc:
        raise UpstreamUnreachable(502, f"model {model!r} did not answer: {exc}", code="upstream_unreachable") from None
    except h1.UpstreamError as exc:
        raise APIError(502, f"model {model!r} did not answer: {exc}", code="upstream_unreachable") from None


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
