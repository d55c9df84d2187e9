"""Speech for the manager's own surfaces (Wyoming today): the same path an HTTP request takes.

A surface that is not HTTP must still wake, start and hold the model, count as in flight until its
last byte, keep the model alive and see the same errors. So this takes a ticket through the
model's controller (``acquire``), sends ``POST /v1/audio/speech`` to the model's server through the
proxy's own client, and releases the ticket exactly once: at the end of the audio, on an error, or
when the caller stops reading (a Wyoming client that went away cancels the reading task).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from voxgate_manager.lifecycle.controller import Rejected
from voxgate_manager.transport import h1
from voxgate_manager.voices import apply_voice_preset

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController
    from voxgate_manager.manager import Manager

ERROR_BODY_MAX = 64 * 1024


class SpeechFailed(Exception):
    """The request was not served; ``status`` and ``code`` as an HTTP client would have seen them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SpeechStream:
    """An admitted request's audio; iterate it, then (or instead) ``close()`` it."""

    def __init__(self, upstream: h1.Response, ctl: "ModelController") -> None:
        self._up = upstream
        self._ctl = ctl
        self._closed = False
        self._ok = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    chunk = await self._up.next_chunk()
                except h1.UpstreamError as exc:
                    self._ok = False
                    raise SpeechFailed(502, "upstream_aborted", f"model {self._ctl.id!r} stopped answering mid-response: {exc}") from None
                if chunk is None:
                    return
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Free the model's slot (once); an unfinished answer closes the connection, so the model's
        server stops synthesizing for nobody."""
        if self._closed:
            return
        self._closed = True
        self._up.release()
        self._ctl.release(self._ok)


async def open_speech(manager: "Manager", ctl: "ModelController", payload: dict[str, Any],
                      is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> SpeechStream:
    """Admit one speech request for ``ctl`` and return its audio once the model answered 200.
    Raises SpeechFailed with the model's (or the lifecycle's) status, code and message."""
    body_obj = dict(payload)
    apply_voice_preset(ctl.spec.voice_presets, body_obj)
    body_obj["model"] = ctl.spec.upstream_model or ctl.id
    body = json.dumps(body_obj).encode()
    try:
        await ctl.acquire(is_disconnected)
    except Rejected as exc:
        raise SpeechFailed(exc.status, exc.code, exc.message) from None
    headers: h1.Headers = [(b"content-type", b"application/json")]
    if ctl.spec.api_key:
        headers.append((b"authorization", b"Bearer " + ctl.spec.api_key.encode()))
    try:
        up = await manager.h1.request(ctl.runtime.base_url, "POST", "/v1/audio/speech", headers, body)
    except h1.UpstreamError as exc:
        ctl.release(ok=False)
        raise SpeechFailed(502, "upstream_unreachable", f"model {ctl.id!r} did not answer: {exc}") from None
    except asyncio.CancelledError:
        ctl.release(ok=True)  # the caller left (a client hung up): not the model's failure
        raise
    except BaseException:
        ctl.release(ok=False)
        raise
    if up.status == 200:
        return SpeechStream(up, ctl)
    try:
        raw = await _read_all(up)
    finally:
        up.release()
        ctl.release(up.status < 500)
    raise SpeechFailed(up.status, *_error_of(raw, up.status))


async def _read_all(up: h1.Response) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        while size < ERROR_BODY_MAX:
            chunk = await up.next_chunk()
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
    except h1.UpstreamError:
        pass
    return b"".join(parts)


def _error_of(raw: bytes, status: int) -> tuple[str, str]:
    """(code, message) from an OpenAI error envelope, or a plain description."""
    try:
        err = json.loads(raw).get("error", {})
        if isinstance(err, dict) and err.get("message"):
            return str(err.get("code") or f"http_{status}"), str(err["message"])
    except (ValueError, AttributeError):
        pass
    return f"http_{status}", f"the model's server answered {status}"
