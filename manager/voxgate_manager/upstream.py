"""The pooled HTTP client the manager uses towards model servers.

One optimisation over a plain httpx.AsyncClient: httpcore writes a request's head and body as two
socket writes; each write to a local server costs a wake-up of that process, which on a small or
virtualised machine is a good part of the manager's added latency. The request is held until
httpcore first reads the response and is then written at once (httpcore's documented
``network_backend`` extension point; nothing else changes).
"""

from __future__ import annotations

import typing

import httpcore
import httpx

FLUSH_AT = 256 * 1024  # a large upload goes out as it comes, not held whole


class _CoalescingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._pending: list[bytes] = []
        self._size = 0

    async def _flush(self, timeout: float | None) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            await self._inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending.append(buffer)
        self._size += len(buffer)
        if self._size >= FLUSH_AT:
            await self._flush(timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        await self._flush(None)
        return await self._inner.start_tls(*args, **kwargs)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _CoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        return _CoalescingStream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        return _CoalescingStream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_upstream_client() -> httpx.AsyncClient:
    # no read timeout: a long synthesis or stream is not an error; trust_env off: model servers are
    # local or on the LAN and must not be sent through an HTTP(S)_PROXY meant for the internet
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool):  # keep plain httpx if its internals ever move
        transport._pool = httpcore.AsyncConnectionPool(max_connections=None, max_keepalive_connections=64,
                                                       network_backend=_CoalescingBackend())
    return httpx.AsyncClient(transport=transport, trust_env=False,
                             timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=None))
