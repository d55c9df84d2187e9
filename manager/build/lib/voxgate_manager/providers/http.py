"""Calls to a provider: a timeout per call, retries with exponential backoff and jitter only on
connect errors, 429 and 5xx (a request whose answer has started is never retried), and the
provider's error mapped into a ProviderError that names the provider."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx

from voxgate_manager.providers.base import ProviderError
from voxgate_manager.providers.config import _ProviderBase
from voxgate_manager.providers.keys import scrub

log = logging.getLogger("voxgate.manager.providers")


def make_client(cfg: _ProviderBase) -> httpx.AsyncClient:
    timeout = httpx.Timeout(connect=min(cfg.timeout_s, 10.0), read=cfg.timeout_s, write=cfg.timeout_s, pool=cfg.timeout_s)
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))


def _retry_after(resp: httpx.Response) -> float | None:
    return retry_after_header(resp.headers.get("retry-after"))


def backoff_delay(attempt: int, cfg: _ProviderBase, hinted: float | None) -> float | None:
    """``backoff_s * 2^attempt`` with jitter (half to all of it), capped at backoff_max_s, and at
    least the provider's Retry-After; None (no retry) when that hint is longer than backoff_max_s:
    the client is better served by a fallback model or its own retry than by a held request."""
    if hinted is not None and hinted > cfg.backoff_max_s:
        return None
    base = min(cfg.backoff_max_s, cfg.backoff_s * (2**attempt))
    delay = random.uniform(base / 2, base) if base > 0 else 0.0
    return max(delay, hinted or 0.0)


async def open_stream(client: httpx.AsyncClient, request: httpx.Request, cfg: _ProviderBase, provider: str,
                      key: str | None, describe_error: Callable[[httpx.Response, bytes], str]) -> httpx.Response:
    """Send and return a 2xx answer whose body is not read yet, or raise ProviderError."""
    attempt = 0
    while True:
        try:
            resp = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            delay = backoff_delay(attempt, cfg, None)
            if attempt < cfg.retries and delay is not None:
                log.warning("provider %s: cannot connect (%s), retry %d in %.2fs", provider, type(exc).__name__, attempt + 1, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise ProviderError(provider, 502, f"provider {provider} could not be reached ({type(exc).__name__}) after "
                                f"{attempt + 1} attempt(s)", "provider_unreachable") from None
        except httpx.TimeoutException:
            raise ProviderError(provider, 504, f"provider {provider} did not answer within timeout_s={cfg.timeout_s:g}s",
                                "provider_timeout") from None
        except httpx.HTTPError as exc:
            raise ProviderError(provider, 502, f"provider {provider}: {type(exc).__name__}", "provider_error") from None
        if resp.status_code < 400:
            return resp
        try:
            body = await resp.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await resp.aclose()
        status = resp.status_code
        hinted = _retry_after(resp)
        delay = backoff_delay(attempt, cfg, hinted)
        if (status == 429 or status >= 500) and attempt < cfg.retries and delay is not None:
            log.warning("provider %s answered %d, retry %d in %.2fs", provider, status, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        raise map_error(provider, status, scrub(describe_error(resp, body), key), hinted)


def map_error(provider: str, status: int, said: str, hinted: float | None) -> ProviderError:
    """A provider's error answer as ours: who said what, with the status a client can act on."""
    if status in (401, 403):
        return ProviderError(provider, 502, f"provider {provider} rejected the manager's credentials ({status}): {said}",
                             "provider_auth")
    if status == 429:
        retry = int(hinted + 0.999) if hinted is not None else 5
        return ProviderError(provider, 429, f"provider {provider} is rate limiting or out of quota (429): {said}",
                             "provider_rate_limited", retry_after_s=max(1, retry))
    if status >= 500:
        return ProviderError(provider, 502, f"provider {provider} failed ({status}): {said}", "provider_error",
                             retry_after_s=int(hinted) if hinted else None)
    # 400, 404, 422: the request itself (text too long, unknown voice): the client's to fix
    return ProviderError(provider, 400, f"provider {provider} refused the request ({status}): {said}",
                         "provider_invalid_request", fallback=False)


def retry_after_header(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def json_message(body: bytes) -> str:
    """The human part of a JSON error body (OpenAI's error.message, ElevenLabs' detail.message)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        detail = data.get("detail")
        if isinstance(detail, dict):
            return str(detail.get("message") or detail.get("status") or detail)
        if isinstance(detail, list) and detail:
            first = detail[0]
            return str(first.get("msg") if isinstance(first, dict) else first)
        if isinstance(detail, str):
            return detail
        if data.get("message"):
            return str(data["message"])
    return json.dumps(data)[:300]
