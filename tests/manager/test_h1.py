"""The proxy's lean HTTP/1.1 client against a real socket server that answers as each test scripts it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from voxgate_manager.transport import h1


@dataclass
class Seen:
    conn: int  # which accepted connection carried it (1, 2, ...)
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]  # returns: keep the connection open


class Upstream:
    """A minimal HTTP/1.1 server: reads requests (content-length bodies) and lets a handler answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[Seen] = []

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ")
                headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(conn, method, target, headers, body)
                self.requests.append(seen)
                if not await self.handler(seen, writer):
                    return
        finally:
            writer.close()


def fixed(body: bytes, extra: bytes = b"") -> Handler:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\nX-Thing: yes\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body)
        await w.drain()
        return True
    return handler


async def read_all(resp: h1.Response) -> bytes:
    out = b""
    while (chunk := await resp.next_chunk()) is not None:
        out += chunk
    return out


async def test_content_length_answer_and_the_request_as_sent() -> None:
    async with Upstream(fixed(b"x" * 1000)) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url + "/base", "POST", "/v1/audio/speech?a=1", [(b"x-client", b"c")], b'{"input":"hi"}')
        assert resp.status == 200
        assert (b"x-thing", b"yes") in resp.headers and not resp.chunked
        assert await read_all(resp) == b"x" * 1000
        resp.release()
        seen = up.requests[0]
        assert (seen.method, seen.target, seen.body) == ("POST", "/base/v1/audio/speech?a=1", b'{"input":"hi"}')
        assert seen.headers["host"] == up.url.removeprefix("http://")
        assert seen.headers["content-length"] == "14" and seen.headers["x-client"] == "c"
        pool.close()


async def test_chunked_answer_is_handed_out_as_it_comes_not_buffered() -> None:
    second = asyncio.Event()

    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await second.wait()  # the client must have the first chunk before the second exists
        w.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await w.drain()
        return True

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert resp.chunked
        assert await asyncio.wait_for(resp.next_chunk(), 5) == b"first"
        second.set()
        assert await read_all(resp) == b"second"
        assert resp.at_end()
        resp.release()
        pool.close()


async def test_kept_alive_connection_is_reused() -> None:
    async with Upstream(fixed(b"ok")) as up:
        pool = h1.Pool()
        for _ in range(3):
            resp = await pool.request(up.url, "POST", "/s", [], b"{}")
            assert await read_all(resp) == b"ok"
            resp.release()
        assert up.connections == 1 and len(up.requests) == 3
        pool.close()


async def test_connection_close_answer_is_not_reused() -> None:
    async with Upstream(fixed(b"ok", b"connection: close\r\n")) as up:
        pool = h1.Pool()
        for _ in range(2):
            resp = await pool.request(up.url, "POST", "/s", [], b"{}")
            assert await read_all(resp) == b"ok"
            resp.release()
        assert up.connections == 2
        pool.close()


async def test_idle_connection_closed_by_the_upstream_is_retried_once_on_a_fresh_one() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        if seen.conn == 1 and len(up.requests) == 2:
            return False  # the kept-alive connection dies before answering anything: as if closed while idle
        return await fixed(b"ok")(seen, w)

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await read_all(resp) == b"ok"
        resp.release()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await read_all(resp) == b"ok"
        resp.release()
        assert [r.conn for r in up.requests] == [1, 1, 2]
        pool.close()


async def test_idle_connection_the_upstream_closed_earlier_is_skipped() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        await fixed(b"ok")(seen, w)
        return False  # answered, then closed (like uvicorn's keep-alive timeout)

    async with Upstream(handler) as up:
        pool = h1.Pool()
        for _ in range(2):
            resp = await pool.request(up.url, "POST", "/s", [], b"{}")
            assert await read_all(resp) == b"ok"
            resp.release()
            await asyncio.sleep(0.05)
        assert [r.conn for r in up.requests] == [1, 2]
        pool.close()


async def test_no_retry_once_the_upstream_has_answered_something() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        if len(up.requests) == 2:
            w.write(b"HTTP/1.1 200 OK\r\ncontent-")
            await w.drain()
            return False
        return await fixed(b"ok")(seen, w)

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        await read_all(resp)
        resp.release()
        with pytest.raises(h1.UpstreamError):
            await pool.request(up.url, "POST", "/s", [], b"{}")
        assert len(up.requests) == 2
        pool.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"a" * 10,
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n" + b"a" * 10 + b"\r\n",
], ids=["content-length", "chunked"])
async def test_upstream_dying_mid_body_is_an_error_after_the_bytes_that_came(answer: bytes) -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(answer)
        await w.drain()
        return False

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await resp.next_chunk() == b"a" * 10
        with pytest.raises(h1.UpstreamError):
            await resp.next_chunk()
        resp.release()
        assert not pool._idle.get(h1.parse_origin(up.url))
        pool.close()


async def test_body_until_the_connection_ends() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await w.drain()
        return False

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "GET", "/", [])
        assert await read_all(resp) == b"all of it"
        resp.release()
        pool.close()


async def test_unreachable_upstream_is_an_upstream_error() -> None:
    async with Upstream(fixed(b"")) as up:
        url = up.url
    await asyncio.sleep(0.05)
    with pytest.raises(h1.UpstreamError, match="connect"):
        await h1.Pool().request(url, "POST", "/s", [], b"{}")


async def test_interrupt_stops_a_wait_and_the_connection_is_not_reused() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await w.drain()
        await asyncio.sleep(30)
        return False

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        asyncio.get_running_loop().call_later(0.05, resp.interrupt)
        with pytest.raises(h1.Interrupted):
            await asyncio.wait_for(resp.next_chunk(), 5)
        resp.release()
        assert not pool._idle.get(h1.parse_origin(up.url))
        pool.close()


async def test_large_upload_and_large_answer_arrive_whole() -> None:
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: past the socket buffers both ways

    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        return await fixed(seen.body)(seen, w)

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/v1/audio/voices", [(b"content-type", b"application/octet-stream")], payload)
        assert up.requests[0].body == payload
        assert await read_all(resp) == payload
        resp.release()
        pool.close()


async def test_interrupt_after_release_does_not_touch_the_next_request_on_that_connection() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await w.drain()
        await asyncio.sleep(0.05)  # the client waits for the body
        w.write(b"2\r\nok\r\n0\r\n\r\n")
        await w.drain()
        return True

    async with Upstream(handler) as up:
        pool = h1.Pool()
        first = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await read_all(first) == b"ok"
        first.release()
        second = await pool.request(up.url, "POST", "/s", [], b"{}")
        first.interrupt()  # e.g. the first client's disconnect noticed late
        assert await read_all(second) == b"ok"
        second.release()
        assert up.connections == 1
        pool.close()


async def test_idle_connection_that_received_unasked_bytes_is_not_reused() -> None:
    async def handler(seen: Seen, w: asyncio.StreamWriter) -> bool:
        await fixed(b"real %d" % seen.conn)(seen, w)
        if seen.conn == 1:
            await asyncio.sleep(0.02)
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray")  # an answer nobody asked for
            await w.drain()
        return True

    async with Upstream(handler) as up:
        pool = h1.Pool()
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await read_all(resp) == b"real 1"
        resp.release()
        await asyncio.sleep(0.1)
        resp = await pool.request(up.url, "POST", "/s", [], b"{}")
        assert await read_all(resp) == b"real 2"
        resp.release()
        pool.close()
