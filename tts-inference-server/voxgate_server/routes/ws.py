"""GET /v1/audio/speech/ws: speech over one WebSocket, generation after generation.

Client messages (JSON text frames), each with an ``action``:
- ``generate`` with the fields of ``POST /v1/audio/speech`` (model, input, voice,
  response_format, speed, ...): binary frames of audio in that format, then a ``metrics`` and
  a ``done`` message. One generation at a time per socket; several in a row.
- ``append`` with ``text`` (and optionally the speech fields, remembered for the socket's
  incremental stream): text arrives piece by piece (an LLM's tokens); each sentence is spoken
  as soon as it is complete, in one continuous audio stream.
- ``flush``: speak what is left of the appended text, then ``metrics`` and ``done``.
- ``stop``: end the current generation or incremental stream now (the engine's work is
  cancelled; ``done`` with ``"stopped": true`` follows once the engine has let go).
- ``ping``: ``pong``.

Server messages: binary audio, and JSON ``{"type": "metrics" | "done" | "pong" | "error", ...}``.
A bad message gets an ``error`` (OpenAI's envelope under ``error``) and the socket stays open.
A client that disconnects has its generation cancelled and its engine slot freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voxgate_server.audio.dsp import OUTPUT_RATE
from voxgate_server.audio.encode import StreamEncoder
from voxgate_server.engines.base import Cancelled
from voxgate_server.errors import APIError, envelope
from voxgate_server.routes.ws_auth import authorized
from voxgate_server.runtime import Runtime
from voxgate_server.synthesis.speech_job import SpeechJob, pcm, pcm_to_float, prepare, validate_body
from voxgate_server.text import split_sentences

log = logging.getLogger("voxgate.ws")

router = APIRouter()

_ids = itertools.count(1)
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*\s+$")


def complete_sentences(buffer: str, language: str = "en") -> tuple[list[str], str]:
    """Split appended text into the sentences that are complete and the rest still open.

    A sentence is complete when text follows it, or when the buffer ends in a sentence mark and
    whitespace (an LLM sends the space with the next token, so "Hi." alone may still grow).
    """
    sentences = split_sentences(buffer, language)
    if not sentences:
        return [], buffer
    if _SENTENCE_END.search(buffer):
        return sentences, ""
    last = sentences[-1]
    return sentences[:-1], buffer[buffer.rfind(last):] if last in buffer else last


class Session:
    """One socket: its sender, its current generation and its incremental text."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.runtime = runtime
        self._send_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.job: SpeechJob | None = None
        self.stopping = False
        # incremental text
        self.fields: dict[str, Any] = {}
        self.buffer = ""
        self.sentences: asyncio.Queue[str | None] | None = None
        self.appended_chars = 0

    async def send_json(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(payload))

    async def send_bytes(self, data: bytes) -> None:
        if data:
            async with self._send_lock:
                await self.ws.send_bytes(data)

    async def error(self, exc: APIError, generation_id: Any = None) -> None:
        payload: dict[str, Any] = {"type": "error", "status": exc.status,
                                   **envelope(exc.message, exc.type, exc.param, exc.code)}
        if generation_id is not None:
            payload["generation_id"] = generation_id
        await self.send_json(payload)

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    # -- actions -------------------------------------------------------------------------------

    async def handle(self, message: dict[str, Any]) -> None:
        action = message.get("action")
        if action == "ping":
            await self.send_json({"type": "pong", **({"id": message["id"]} if "id" in message else {})})
        elif action == "generate":
            await self.generate(message)
        elif action == "append":
            await self.append(message)
        elif action == "flush":
            await self.flush()
        elif action == "stop":
            await self.stop()
        else:
            raise APIError(400, f"Unknown action {action!r}: use generate, append, flush, stop or ping.",
                           param="action", code="invalid_action")

    def _check_idle(self) -> None:
        if self.busy:
            raise APIError(409, "A generation is already running on this socket: send 'stop' or wait for 'done'.",
                           param="action", code="generation_in_progress")

    async def generate(self, message: dict[str, Any]) -> None:
        self._check_idle()
        fields = {k: v for k, v in message.items() if k not in ("action", "id")}
        body = validate_body(self.runtime, fields)
        job = prepare(self.runtime, body)
        generation_id = message.get("id", next(_ids))
        self.stopping = False
        self.task = asyncio.create_task(self._run_generation(job, generation_id))

    async def _run_generation(self, job: SpeechJob, generation_id: Any) -> None:
        self.job = job
        encoder = None if job.body.response_format == "pcm" else StreamEncoder(job.body.response_format)
        stopped = False
        try:
            async for data in pcm(self.runtime, job):
                if self.stopping:
                    continue  # drain until the engine has stopped
                if encoder is None:
                    await self.send_bytes(data)
                else:
                    await self.send_bytes(await asyncio.to_thread(encoder.encode, pcm_to_float(data)))
            if encoder is not None and not self.stopping:
                await self.send_bytes(await asyncio.to_thread(encoder.finish))
        except Cancelled:
            stopped = True
        except APIError as exc:
            await self.error(exc, generation_id)
            return
        finally:
            if encoder is not None:
                encoder.close()
            self.job = None
        stopped = stopped or self.stopping
        await asyncio.sleep(0)  # let the worker's slot release run first
        await self.send_json({"type": "metrics", "generation_id": generation_id, **job.metrics()})
        await self.send_json({"type": "done", "generation_id": generation_id, "stopped": stopped})

    async def stop(self) -> None:
        if not self.busy:
            await self.send_json({"type": "done", "generation_id": None, "stopped": False,
                                  "message": "nothing to stop"})
            return
        self.stopping = True
        self.buffer = ""
        if self.job is not None:
            self.job.cancel()
        if self.sentences is not None:
            self.sentences.put_nowait(None)

    # -- incremental text ----------------------------------------------------------------------

    async def append(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if not isinstance(text, str):
            raise APIError(400, "'append' needs 'text', a string.", param="text", code="invalid_value")
        if self.sentences is None:
            self._check_idle()
            fields = {k: v for k, v in message.items() if k not in ("action", "id", "text")}
            self.fields = {**self.fields, **fields}
            # validate the stream's settings now, with a stand-in text, so errors come at once
            job = prepare(self.runtime, validate_body(self.runtime, {**self.fields, "input": "x"}))
            self.stopping = False
            self.appended_chars = 0
            self.sentences = asyncio.Queue()
            generation_id = message.get("id", next(_ids))
            self.task = asyncio.create_task(self._run_incremental(job, generation_id))
        self.appended_chars += len(text)
        if self.appended_chars > self.runtime.settings.max_input_chars:
            await self.stop()
            raise APIError(400, f"The appended text is over {self.runtime.settings.max_input_chars} characters; "
                           "the stream was stopped.", param="text", code="string_above_max_length")
        self.buffer += text
        done, self.buffer = complete_sentences(self.buffer)
        for sentence in done:
            self.sentences.put_nowait(sentence)

    async def flush(self) -> None:
        if self.sentences is None:
            raise APIError(400, "Nothing to flush: send 'append' first.", param="action", code="invalid_action")
        if self.buffer.strip():
            self.sentences.put_nowait(self.buffer.strip())
        self.buffer = ""
        self.sentences.put_nowait(None)

    async def _run_incremental(self, template: SpeechJob, generation_id: Any) -> None:
        assert self.sentences is not None
        fmt = template.body.response_format
        encoder = None if fmt == "pcm" else StreamEncoder(fmt)
        pause = np.zeros(int(OUTPUT_RATE * self.runtime.settings.chunk_pause_ms / 1000), dtype=np.float32)
        totals = {"sentences": 0, "audio_seconds": 0.0, "time_to_first_audio_s": None}
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def out(samples: np.ndarray) -> None:
            if totals["time_to_first_audio_s"] is None and samples.size:
                totals["time_to_first_audio_s"] = round(loop.time() - started, 4)
            totals["audio_seconds"] += samples.size / OUTPUT_RATE
            if encoder is None:
                await self.send_bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
            else:
                await self.send_bytes(await asyncio.to_thread(encoder.encode, samples))

        stopped = False
        try:
            while True:
                sentence = await self.sentences.get()
                if sentence is None or self.stopping:
                    break
                body = validate_body(self.runtime, {**self.fields, "input": sentence})
                job = prepare(self.runtime, body)
                self.job = job
                if totals["sentences"]:
                    await out(pause)
                totals["sentences"] += 1
                try:
                    async for data in pcm(self.runtime, job):
                        if not self.stopping:
                            await out(pcm_to_float(data))
                except Cancelled:
                    break
                finally:
                    self.job = None
            stopped = self.stopping
            if encoder is not None and not stopped:
                await self.send_bytes(await asyncio.to_thread(encoder.finish))
        except APIError as exc:
            await self.error(exc, generation_id)
            return
        finally:
            if encoder is not None:
                encoder.close()
            self.sentences = None
            self.buffer = ""
        await asyncio.sleep(0)
        elapsed = loop.time() - started
        await self.send_json({"type": "metrics", "generation_id": generation_id, "model": template.slot.id,
                              "voice": template.voice, "sentences": totals["sentences"],
                              "time_to_first_audio_s": totals["time_to_first_audio_s"],
                              "audio_seconds": round(totals["audio_seconds"], 4),
                              "elapsed_seconds": round(elapsed, 4)})
        await self.send_json({"type": "done", "generation_id": generation_id, "stopped": stopped})

    async def close(self) -> None:
        """The client is gone: cancel the engine's work and wait until its slot is free."""
        self.stopping = True
        if self.job is not None:
            self.job.cancel()
        if self.sentences is not None:
            self.sentences.put_nowait(None)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def serve(websocket: WebSocket, handler, session_class: type[Session] = Session) -> None:  # noqa: ANN001
    """Accept, then read JSON messages until the client leaves; shared by the RealtimeTTS socket.

    ``handler`` is an async (session, message) -> None."""
    runtime: Runtime = websocket.app.state.runtime
    if not authorized(websocket, runtime.settings.api_keys):
        await websocket.close(code=1008, reason="invalid API key")
        return
    await websocket.accept()
    session = session_class(websocket, runtime)
    try:
        while True:
            raw = await websocket.receive()
            if raw["type"] == "websocket.disconnect":
                break
            text = raw.get("text")
            try:
                if text is None:
                    raise APIError(400, "Send JSON text messages, not binary ones.", code="invalid_message")
                try:
                    message = json.loads(text)
                except ValueError:
                    raise APIError(400, "The message is not valid JSON.", code="invalid_json") from None
                if not isinstance(message, dict):
                    raise APIError(400, "The message must be a JSON object with an 'action'.", code="invalid_message")
                await handler(session, message)
            except APIError as exc:
                await session.error(exc)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await session.close()


@router.websocket("/v1/audio/speech/ws")
async def speech_ws(websocket: WebSocket) -> None:
    await serve(websocket, Session.handle)
