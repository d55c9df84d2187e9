"""A small keep-alive HTTP/1.1 client for the proxy's hot path (speech and voice uploads).

Why not httpx here: profiling the manager during bench/service/manager_bench.py put about a quarter of its
per-request CPU in the httpx → httpcore → h11 → anyio stack (URL parsing, header models, cookie
handling, per-request cancel scopes, a pure-Python parser). This client is an asyncio Protocol over
a pooled connection that writes the whole request at once and parses the answer with ``httptools``
(llhttp in C, already installed as uvicorn's fast parser). It does only what the proxy needs:
one request at a time per connection, Content-Length / chunked / until-EOF bodies, flow control
both ways, TLS for remote models. httpx stays for everything else (probes, warm-ups, voice lists).

Retry rule: a kept-alive connection the upstream closed while idle (uvicorn drops them after 5 s)
fails before any byte of an answer comes back; only then the request is sent once more on a fresh
connection. A failure after the first answer byte is the caller's to report, never retried.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from voxgate_manager.transport.tls import client_context

Headers = list[tuple[bytes, bytes]]

READ_HIGH_WATER = 512 * 1024  # buffered answer bytes before reading from the upstream pauses
JOIN_BELOW = 64 * 1024  # request bodies smaller than this go out in one buffer with the head


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange (closed, reset, bad HTTP)."""


class ConnectFailed(UpstreamError):
    """No connection could be made: nothing of the request was sent."""


class Interrupted(Exception):
    """The caller gave up on a response (its client went away) while waiting for it."""


@dataclass(frozen=True)
class Origin:
    host: str
    port: int
    tls: bool
    prefix: str  # a base URL's path, put before every request path
    host_header: bytes


@functools.lru_cache(maxsize=256)
def parse_origin(base_url: str) -> Origin:
    u = urlsplit(base_url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    netloc = u.netloc.rsplit("@", 1)[-1]
    host_header = netloc.encode("ascii") if netloc.isascii() else netloc.encode("idna")
    return Origin(u.hostname, port, tls, u.path.rstrip("/"), host_header)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; holds the state of the exchange in progress."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._write_ready: asyncio.Future[None] | None = None  # set while the socket buffer is full
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.received_any = False
        self.headers_done = False
        self.complete = False
        self.status = 0
        self.headers: Headers = []
        self.until_eof = False
        self.reusable = False  # the answer allows keep-alive (no "connection: close", HTTP/1.1)
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.reading_paused = False
        self.error: UpstreamError | None = None
        self.interrupted = False
        self.waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.complete:
            self.reusable = False  # bytes after a complete answer (nothing we asked for): not reused
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad HTTP from upstream: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.headers_done and self.until_eof and not self.complete and exc is None:
            self.complete = True  # a body delimited by the end of the connection
        elif not self.complete:
            what = "closed the connection" if exc is None else f"{type(exc).__name__}: {exc}"
            self._fail(UpstreamError(f"upstream {what}"))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._write_ready = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._write_ready = None

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = []
            return
        self.headers_done = True
        self.reusable = self.parser.should_keep_alive()
        if not any(n in (b"content-length", b"transfer-encoding") for n, _ in self.headers):
            self.until_eof = self.status not in (204, 304)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self.reading_paused and self.transport is not None and not self.lost:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # the end of an interim answer
        self.complete = True
        self._wake()

    # -- used by the pool and the response ----------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        if self.interrupted:
            raise Interrupted()
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def interrupt(self) -> None:
        self.interrupted = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(Interrupted())

    async def send(self, head: bytes, body: bytes, timeout: float) -> None:
        assert self.transport is not None
        if len(body) < JOIN_BELOW:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        if self._write_ready is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._write_ready), timeout)
            except TimeoutError:
                self.close()
                raise UpstreamError(f"upstream did not take the request within {timeout:g}s") from None

    def keep_alive(self) -> bool:
        return self.complete and not self.lost and self.error is None and not self.until_eof and self.reusable

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()


class Response:
    """An answer being received; read it with next_chunk() and give it back with release()."""

    def __init__(self, conn: _Connection, pool: Pool, origin: Origin) -> None:
        self._conn = conn
        self._pool = pool
        self._origin = origin
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    @property
    def chunked(self) -> bool:
        """True unless the upstream said how long the body is (a stream is still being made)."""
        return not any(n == b"content-length" for n, _ in self.headers)

    def buffered(self) -> bool:
        """Whether next_chunk() can answer without waiting for the upstream."""
        c = self._conn
        return bool(c.chunks) or c.complete or c.error is not None

    def at_end(self) -> bool:
        """Whether the whole answer has been handed out (the last chunk was the last)."""
        return self._conn.complete and not self._conn.chunks

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it came from the socket; None at its end.
        Raises UpstreamError if the upstream broke off, Interrupted if interrupt() was called."""
        c = self._conn
        while not c.chunks:
            if c.complete:
                return None
            if c.error is not None:
                raise c.error
            await c.wait()
        chunk = c.chunks.popleft()
        c.buffered -= len(chunk)
        if c.reading_paused and c.buffered < READ_HIGH_WATER // 2 and c.transport is not None and not c.lost:
            c.reading_paused = False
            c.transport.resume_reading()
        return chunk

    def interrupt(self) -> None:
        """Make a pending next_chunk() raise Interrupted (safe to call from a done-callback).
        A no-op once released: the connection may already carry someone else's request."""
        if not self._released:
            self._conn.interrupt()

    def release(self) -> None:
        """Give the connection back for reuse if the answer was read whole, else close it."""
        if self._released:
            return
        self._released = True
        c = self._conn
        if c.keep_alive():
            self._pool._put(self._origin, c)
        else:
            c.close()


class Pool:
    """Kept-alive connections per origin; any number of requests at once (one per connection)."""

    def __init__(self, *, max_idle_per_origin: int = 64, connect_timeout: float = 5.0, write_timeout: float = 30.0) -> None:
        self.max_idle_per_origin = max_idle_per_origin
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self._idle: dict[Origin, list[_Connection]] = {}

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.lost and not conn.received_any and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()  # closed by the upstream while idle, or it sent something unasked
        return None

    def _put(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self.max_idle_per_origin:
            conn.close()
            return
        conn._reset()
        idle.append(conn)

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = client_context() if origin.tls else None  # built once per process (cached)
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), origin.host, origin.port, ssl=tls,
                                                       server_hostname=origin.host if tls else None)
        except TimeoutError:
            raise ConnectFailed(f"connect to {origin.host}:{origin.port} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"connect to {origin.host}:{origin.port} failed: {exc.strerror or exc}") from None
        return conn

    async def request(self, base_url: str, method: str, target: str, headers: Headers, body: bytes = b"") -> Response:
        """Send one request (``target`` = path and query, after the base URL's own path) and return
        once the answer's status and headers are in. ``headers`` must not carry host, content-length,
        transfer-encoding nor connection: they are this client's."""
        origin = parse_origin(base_url)
        lines = [f"{method} {origin.prefix}{target} HTTP/1.1\r\n".encode("latin-1"), b"host: ", origin.host_header,
                 b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        retried = False
        while True:
            conn = None if retried else self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            try:
                await conn.send(head, body, self.write_timeout)
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait()
            except UpstreamError:
                conn.close()
                if reused and not conn.received_any:
                    retried = True
                    continue  # a kept-alive connection closed under us: once more on a fresh one
                raise
            except BaseException:
                conn.close()  # cancelled mid-exchange: the connection's state is unknown
                raise
            return Response(conn, self, origin)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
