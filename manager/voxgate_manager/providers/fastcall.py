"""Provider calls on the proxy's own HTTP/1.1 client (voxgate_manager/transport/h1.py) instead of httpx, for
the OpenAI-shaped providers, where the per-request cost is the proxy's added latency
(bench/service/cache_bench.py). Same rules as providers/http.py: a timeout per call (connect and first
byte, then the gap between chunks), retries with backoff and jitter only on connect errors, 429
and 5xx, never once the answer started."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from voxgate_manager.providers.base import ProviderError, ProviderStreamError
from voxgate_manager.providers.config import _ProviderBase
from voxgate_manager.providers.http import backoff_delay, map_error, retry_after_header
from voxgate_manager.providers.keys import scrub
from voxgate_manager.transport import h1

log = logging.getLogger("voxgate.manager.providers")
ERROR_BODY_MAX = 64 * 1024


def header(resp: h1.Response, name: bytes) -> str | None:
    for k, v in resp.headers:
        if k == name:
            return v.decode("latin-1")
    return None


async def read_all(resp: h1.Response, limit: int = ERROR_BODY_MAX) -> bytes:
    out = b""
    try:
        while len(out) < limit:
            chunk = await resp.next_chunk()
            if chunk is None:
                break
            out += chunk
    except h1.UpstreamError:
        pass
    finally:
        resp.release()
    return out


async def open_h1(pool: h1.Pool, cfg: _ProviderBase, provider: str, key: str | None, base_url: str, target: str,
                  headers: h1.Headers, body: bytes, describe_error: Callable[[bytes], str]) -> h1.Response:
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(cfg.timeout_s):
                resp = await pool.request(base_url, "POST", target, headers, body)
        except TimeoutError:
            raise ProviderError(provider, 504, f"provider {provider} did not answer within timeout_s={cfg.timeout_s:g}s",
                                "provider_timeout") from None
        except h1.UpstreamError as exc:
            connect = str(exc).startswith("connect to")  # nothing was sent: safe to try again
            delay = backoff_delay(attempt, cfg, None)
            if connect and attempt < cfg.retries and delay is not None:
                log.warning("provider %s: cannot connect, retry %d in %.2fs", provider, attempt + 1, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise ProviderError(provider, 502, f"provider {provider} could not be reached after {attempt + 1} attempt(s)"
                                if connect else f"provider {provider} broke the exchange before answering",
                                "provider_unreachable") from None
        if resp.status < 400:
            return resp
        data = await read_all(resp)
        hinted = retry_after_header(header(resp, b"retry-after"))
        delay = backoff_delay(attempt, cfg, hinted)
        if (resp.status == 429 or resp.status >= 500) and attempt < cfg.retries and delay is not None:
            log.warning("provider %s answered %d, retry %d in %.2fs", provider, resp.status, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        raise map_error(provider, resp.status, scrub(describe_error(data), key), hinted)


async def body_chunks(resp: h1.Response, cfg: _ProviderBase, provider: str) -> AsyncIterator[bytes]:
    """The answer's body as it arrives; a gap longer than timeout_s or a cut connection raises
    ProviderStreamError (the client connection is then aborted)."""
    while True:
        try:
            if resp.buffered():
                chunk = await resp.next_chunk()
            else:
                async with asyncio.timeout(cfg.timeout_s):
                    chunk = await resp.next_chunk()
        except TimeoutError:
            raise ProviderStreamError(f"provider {provider} stalled for more than timeout_s={cfg.timeout_s:g}s") from None
        except h1.UpstreamError as exc:
            raise ProviderStreamError(f"provider {provider} broke off mid-answer: {exc}") from None
        if chunk is None:
            return
        yield chunk
