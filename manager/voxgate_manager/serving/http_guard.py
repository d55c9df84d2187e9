"""The public listener's HTTP protocol: uvicorn's httptools protocol with a bound on how long a client
may take to send its request head (slowloris), and OpenAI's envelope on malformed HTTP.

uvicorn bounds idle keep-alive connections but not a request head sent a byte at a time, so one
client could hold connections open forever. The body's read time is bounded in the app (read_body).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from voxgate_manager.errors import envelope


def _raw_answer(status: int, reason: str, message: str, code: str) -> bytes:
    body = json.dumps(envelope(message, "invalid_request_error", None, code)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


class GuardedProtocol(HttpToolsProtocol):
    """Closes a connection whose request head is not complete within ``header_timeout_s`` (408)."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None and self.header_timeout_s > 0:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.logger.warning("closed a connection whose request head took longer than %gs", self.header_timeout_s)
        self.transport.write(_raw_answer(408, "Request Timeout",
                                         f"The request head was not received within {self.header_timeout_s:g}s.", "request_timeout"))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(_raw_answer(400, "Bad Request", f"{msg} (malformed HTTP/1.1)", "invalid_http"))
        self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedProtocol]:
    """A protocol class for uvicorn.Config(http=...) with this bound."""
    return type("GuardedProtocol", (GuardedProtocol,), {"header_timeout_s": header_timeout_s})
