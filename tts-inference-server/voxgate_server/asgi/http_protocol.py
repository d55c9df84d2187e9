"""uvicorn's HTTP protocol with a bound on the time to send request headers, and JSON 4xx.

uvicorn bounds nothing while a request's headers arrive (neither time nor, with httptools, size): a connection that sends nothing, or
one header byte every few seconds (slowloris), is held for ever, and its keep-alive timer is
reset by every byte. Here a deadline is armed when a connection opens and again when a response
completes; it is cleared only when a request's headers are complete. When it passes, a client
that sent part of a request gets a 408 in OpenAI's envelope, an idle one is simply closed. The
body's own deadline is ASGI middleware (``body_timeout.py``), where the app can answer.

Malformed HTTP (bad chunk sizes, broken request lines) is still uvicorn's 400, but in the
envelope instead of plain text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from voxgate_server.errors import envelope


def _raw_error(status: int, reason: str, message: str, code: str) -> bytes:
    body = json.dumps(envelope(message, "invalid_request_error", None, code)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


class HeaderDeadlineMixin:
    """Mixed into uvicorn's ``HttpToolsProtocol`` or ``H11Protocol`` (``make_protocol``)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def _arm_header_deadline(self) -> None:
        self._clear_header_deadline()
        if self.header_timeout_s <= 0:
            return
        self._header_cycle = self.cycle
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _clear_header_deadline(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes:
            self.transport.write(_raw_error(
                408, "Request Timeout",
                f"The request headers did not arrive within {self.header_timeout_s:g} s.", "header_timeout"))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        waiting = getattr(self, "_header_timer", None) is not None
        if waiting:
            self._header_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if not waiting or self._header_timer is None:
            return
        if self.cycle is not self._header_cycle:
            self._clear_header_deadline()  # a request's headers are complete
        elif self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            # httptools has no limit of its own on the size of a request's headers
            self._clear_header_deadline()
            self.transport.write(_raw_error(
                431, "Request Header Fields Too Large",
                f"The request headers are larger than {self.max_header_bytes} bytes.", "headers_too_large"))
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_deadline()  # waiting for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_header_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        self._clear_header_deadline()
        self.transport.write(_raw_error(400, "Bad Request", f"{msg} The request is not valid HTTP/1.1.",
                                        "invalid_http"))
        self.transport.close()


def make_protocol(header_timeout_s: float, max_header_bytes: int = 64 * 1024) -> type:
    """The protocol class for ``uvicorn.run(http=...)``: httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools is a dependency; h11 is uvicorn's fallback
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    attrs = {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes}
    return type(f"Voxgate{base.__name__}", (HeaderDeadlineMixin, base), attrs)
