"""Loopback HTTP helpers the benches share: a free port, waiting for a URL to answer 200, and one
streamed speech request timed from the first byte to the last."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not up in {timeout}s")


def stream_speech(client: httpx.Client, url: str, body: dict[str, Any], timeout: float) -> tuple[float, float, float, int]:
    """POST ``body`` to ``url``/v1/audio/speech and read the stream: (start, first byte, end) in
    perf_counter seconds, and the bytes received. A non-200 raises."""
    t0 = time.perf_counter()
    first = None
    n = 0
    with client.stream("POST", url + "/v1/audio/speech", json=body, timeout=timeout) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:300]!r}")
        for data in r.iter_bytes():
            if data and first is None:
                first = time.perf_counter()
            n += len(data)
    end = time.perf_counter()
    return t0, first or end, end, n
