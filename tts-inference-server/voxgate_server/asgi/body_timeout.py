"""A bound on the time a client may take to send a request body (pure ASGI middleware).

Without it a client that declares a body and sends it a byte at a time holds a connection and a
request for ever. The clock starts when the headers are complete; once the body is in, the
wrapped ``receive`` is left alone (it then only waits for a disconnect). A late body is a 408 in
OpenAI's envelope, and the connection is closed.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxgate_server.errors import APIError


class BodyTimeout(APIError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"The request body did not arrive within {timeout_s:g} s.", code="body_timeout",
                         headers={"Connection": "close"})


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
