"""ASGI responses of the speech path: a cache hit streamed from disk, a provider's answer relayed
chunk by chunk, and a tee that stores a complete answer in the cache while relaying it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from voxgate_manager.cache.store import CacheWriter, Entry
from voxgate_manager.providers.base import ProviderAnswer, ProviderStreamError
from voxgate_manager.transport.proxy import UpstreamAborted

log = logging.getLogger("voxgate.manager.routing")
READ_SIZE = 64 * 1024


def _h(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]


class CachedAnswer(Response):
    """A stored answer, read from disk in pieces: no model, no lifecycle, no idle timer involved."""

    def __init__(self, entry: Entry, headers: dict[str, str], on_done: Callable[[bool], None]) -> None:  # noqa: D107
        self.status_code = 200
        self.background = None
        self.entry = entry
        self.extra = headers
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ok = False
        try:
            f = open(self.entry.path, "rb")  # noqa: SIM115
        except OSError:
            f = None
        if f is None:  # purged between lookup and answer
            from voxgate_manager.errors import APIError, error_response

            self.on_done(False)
            await error_response(APIError(503, "the cached answer vanished; retry", code="cache_race",
                                          headers={"Retry-After": "1"}))(scope, receive, send)
            return
        try:
            first = f.read(READ_SIZE)
            headers = {"content-type": self.entry.content_type, "content-length": str(self.entry.size),
                       "x-voxgate-model": self.entry.model, "x-voxgate-cache": "hit", **self.extra}
            await send({"type": "http.response.start", "status": 200, "headers": _h(headers)})
            chunk = first
            while True:
                nxt = f.read(READ_SIZE) if len(chunk) == READ_SIZE else b""
                await send({"type": "http.response.body", "body": chunk, "more_body": bool(nxt)})
                if not nxt:
                    break
                chunk = nxt
            ok = True
        except OSError:
            pass  # the client left
        finally:
            f.close()
            self.on_done(ok)


class ProviderResponse(Response):
    """A provider's answer relayed as it arrives; ``on_done(ok)`` runs exactly once."""

    def __init__(self, answer: ProviderAnswer, on_done: Callable[[bool], None], model: str) -> None:  # noqa: D107
        self.status_code = answer.status
        self.background = None
        self.answer = answer
        self.on_done = on_done
        self.model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        a = self.answer
        ok = False
        headers = {**{k: v for k, v in a.headers.items() if k.lower() not in ("content-type",)},
                   "content-type": a.content_type, "x-accel-buffering": "no", "x-voxgate-model": self.model}
        try:
            await send({"type": "http.response.start", "status": a.status, "headers": _h(headers)})
            async for chunk in a.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            ok = True
        except ProviderStreamError as exc:
            raise UpstreamAborted(f"model {self.model!r}: {exc}") from None
        except OSError:
            pass  # the client left
        finally:
            try:
                await a.close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not mask the outcome
                pass
            self.on_done(ok)


class TeeResponse(Response):
    """Relays ``inner`` adding the routing headers; stores the body in the cache only when the whole
    answer went out with status 200; then ``on_complete(ok, entry)`` (usage accounting)."""

    def __init__(self, inner: Any, headers: dict[str, str], writer: CacheWriter | None,
                 on_complete: Callable[[bool, Entry | None], Awaitable[None]]) -> None:  # noqa: D107
        self.status_code = getattr(inner, "status_code", 200)
        self.background = None
        self.inner = inner
        self.extra = _h(headers)
        self.writer = writer
        self.on_complete = on_complete
        self.answer: tuple[str, bytes, int] = ("", b"", 0)  # content type, first bytes, size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = self.writer
        state: dict[str, Any] = {"status": 0, "complete": False, "entry": None, "bytes": 0, "head": b"", "ctype": ""}

        async def tee(message: Message) -> None:
            nonlocal writer
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["ctype"] = next((v.decode("latin-1") for k, v in message.get("headers", []) if k == b"content-type"), "")
                message = {**message, "headers": [*message.get("headers", []), *self.extra]}
                if message["status"] != 200 and writer is not None:
                    writer.abort()
                    writer = None
                await send(message)
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                last = not message.get("more_body", False)
                if len(state["head"]) < 64:
                    state["head"] += body[:64]
                state["bytes"] += len(body)
                if not last:
                    await send(message)  # a client that left raises here: the piece is not kept either
                    if writer is not None and body:
                        writer.write(body)
                    return
                if writer is not None:
                    if body:
                        writer.write(body)
                    # indexed before the client sees the end, so its next request is a hit
                    state["entry"] = self._commit(writer)
                    writer = None
                await send(message)
                state["complete"] = True
                return
            await send(message)

        try:
            await self.inner(scope, receive, tee)
        finally:
            ok = bool(state["complete"]) and 200 <= int(state["status"]) < 300
            if writer is not None:  # never reached the end
                writer.abort()
            entry: Entry | None = state.get("entry")  # type: ignore[assignment]
            if entry is not None:
                from voxgate_manager.cache.store import audio_duration

                duration = await asyncio.to_thread(audio_duration, entry.path, entry.format, entry.content_type)
                if duration is not None:
                    with contextlib.suppress(Exception):
                        self.writer.cache.conn.execute("UPDATE tts_cache SET duration = ? WHERE key = ?", (duration, entry.key))
                    entry = Entry(**{**entry.__dict__, "duration": duration})
            self.answer = (state["ctype"], state["head"], state["bytes"])  # for accounting without the cache
            await self.on_complete(ok, entry)

    @staticmethod
    def _commit(writer: CacheWriter) -> Entry | None:
        try:
            return writer.commit()
        except (OSError, sqlite3.Error) as exc:
            log.warning("cache: could not store an answer: %s", exc)
            writer.abort()
            return None
