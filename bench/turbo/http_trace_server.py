"""The voxgate server exactly as ``voxgate-server`` runs it, plus a bench-only trace of one burst.

Used by the HTTP phase of the GPU bench when ``HTTP_TRACE`` is set, to see where requests lose
time between the socket and the engine. ``POST /bench/trace`` arms the trace: from then on the
server records when each ``/v1/audio/speech`` request reached the app (ASGI entry), when the
engine asked for its speech tokens, when they were submitted to T3, when its first and last
token came, the T3 decoder's launches, the S3Gen worker's calls and the garbage collector's
passes. ``GET /bench/trace`` returns the record and disarms. Times are ``time.perf_counter()``
(CLOCK_MONOTONIC, shared with the client process). Nothing here is part of the product: the
route exists only in this wrapper. ``UVICORN_LOOP`` and ``UVICORN_HTTP`` (default ``auto``:
uvloop and httptools when installed, as in the image) let a run compare the pure-Python asyncio
loop and h11 parser against them.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import uvicorn

from voxgate_server.app import create_app
from voxgate_server.settings import Settings

ENGINE = "chatterbox-turbo"


class Trace:
    def __init__(self) -> None:
        self.armed = False
        self.arrivals: list[float] = []
        self.streams: list[Any] = []
        self.gc: list[tuple[str, int, float]] = []  # ("start" | "stop", generation, time)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if self.armed:
            self.gc.append((phase, info["generation"], time.perf_counter()))


def main() -> None:
    settings = Settings()
    app = create_app(settings)
    trace = Trace()
    gc.callbacks.append(trace.on_gc)

    def fast() -> Any:
        return app.state.runtime.slots[ENGINE].engine.fast

    @app.post("/bench/trace")
    def arm() -> dict[str, Any]:
        ft = fast()
        if not getattr(ft, "_bench_wrapped", False):
            tokens = ft.tokens

            def traced_tokens(*a: Any, **kw: Any) -> Any:
                called = time.perf_counter()
                stream = tokens(*a, **kw)
                if trace.armed:
                    trace.streams.append((called, stream))
                return stream

            ft.tokens = traced_tokens
            ft._bench_wrapped = True
        trace.arrivals.clear()
        trace.gc.clear()
        trace.streams.clear()
        ft.decoder.trace, ft.vocoder.worker.trace = [], []
        trace.armed = True
        return {"armed_at": time.perf_counter()}

    @app.get("/bench/trace")
    def read() -> dict[str, Any]:
        ft = fast()
        trace.armed = False
        out = {"arrivals": list(trace.arrivals),
               "streams": [[s.t_submit, s.t_first, s.t_done, len(s.tokens), called] for called, s in trace.streams],
               "steps": list(ft.decoder.trace or []), "calls": list(ft.vocoder.worker.trace or []),
               "gc": [[t0, gen, t1 - t0] for (p0, gen, t0), (p1, _, t1) in zip(trace.gc[::2], trace.gc[1::2])
                      if p0 == "start" and p1 == "stop"]}
        ft.decoder.trace = ft.vocoder.worker.trace = None
        return out

    inner = app.build_middleware_stack  # arrival time at the outermost layer of the app

    def build() -> Any:
        stack = inner()

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if trace.armed and scope.get("type") == "http" and scope.get("path") == "/v1/audio/speech":
                trace.arrivals.append(time.perf_counter())
            await stack(scope, receive, send)

        return asgi

    app.build_middleware_stack = build  # type: ignore[method-assign]
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=5, loop=os.environ.get("UVICORN_LOOP", "auto"),
                http=os.environ.get("UVICORN_HTTP", "auto"))


if __name__ == "__main__":
    main()
