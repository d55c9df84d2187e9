"""Loopback servers speaking OpenAI's and ElevenLabs' documented speech wire formats, for the
provider tests (the only place the project accepts a fake: a third-party cloud API).

OpenAI: POST /v1/audio/speech (Bearer key; errors as {"error": {message, type, param, code}};
``stream_format: "sse"`` answers ``speech.audio.delta`` / ``speech.audio.done`` events).
ElevenLabs: GET /v1/voices, POST /v1/text-to-speech/{voice_id}/stream?output_format=... (xi-api-key;
errors as {"detail": {"status", "message"}}; 5,000 characters at most per request).

Behaviour is chosen by markers in the text: ``#429x1`` (429 with Retry-After: 1 the first time),
``#429always``, ``#quota`` (OpenAI, gpt-4o-mini-tts: 429 insufficient_quota), ``#500x1``, ``#500always``, ``#drop`` (audio, then the connection is cut), ``#slow``
(3 s before the answer), ``#hold`` (first chunk, then wait for ``release`` before the rest)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ports import free_port

RATE = 24000
ELEVEN_VOICES = [
    {"voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "category": "premade", "labels": {"accent": "american"}},
    {"voice_id": "AZnzlk1XvdvUeBnXmlld", "name": "Domi", "category": "premade", "labels": {"accent": "american"}},
]


def tone_pcm(seconds: float = 0.5, freq: float = 220.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


def tone_mp3(seconds: float = 0.5) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        st = out.add_stream("mp3", rate=44100, layout="mono")
        samples = np.frombuffer(tone_pcm(seconds), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        rs = av.AudioResampler(format=st.codec_context.format.name, layout="mono", rate=44100)
        for f in rs.resample(frame) + rs.resample(None):
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return buf.getvalue()


class FakeProviders:
    def __init__(self, openai_key: str, eleven_key: str) -> None:
        self.openai_key, self.eleven_key = openai_key, eleven_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []
        self.release = threading.Event()
        self.mp3 = tone_mp3()
        self.pcm = tone_pcm()
        app = Starlette(routes=[
            Route("/v1/audio/speech", self.openai_speech, methods=["POST"]),
            Route("/v1/voices", self.eleven_voices, methods=["GET"]),
            Route("/v1/text-to-speech/{voice_id}/stream", self.eleven_stream, methods=["POST"]),
        ])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeProviders:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(10)

    # -- shared behaviours --------------------------------------------------------------------

    def _marker(self, text: str, error: Any) -> Response | None:
        """A scripted failure for this text, counted per text."""
        self.calls[text] += 1
        n = self.calls[text]
        for code in (429, 500):
            if f"#{code}always" in text or (f"#{code}x1" in text and n == 1):
                headers = {"Retry-After": "1"} if code == 429 else {}
                return JSONResponse(error(code), status_code=code, headers=headers)
        return None

    async def _audio(self, text: str, data: bytes, media: str) -> Response:
        if "#slow" in text:
            await asyncio.sleep(3)
        pieces = [data[i:i + 2048] for i in range(0, len(data), 2048)]

        async def body():
            yield pieces[0]
            if "#hold" in text:
                await asyncio.to_thread(self.release.wait, 20)
            if "#drop" in text:
                await asyncio.sleep(0.05)
                raise ConnectionResetError("fake provider cut the connection")
            for p in pieces[1:]:
                await asyncio.sleep(0.001)
                yield p

        return StreamingResponse(body(), media_type=media)

    # -- OpenAI -------------------------------------------------------------------------------

    @staticmethod
    def _openai_error(code: int, message: str | None = None, kind: str | None = None) -> dict[str, Any]:
        defaults = {401: ("Incorrect API key provided: sk-te**********CRET. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
                    429: ("Rate limit reached for tts-1 in organization org-x on requests per min (RPM): Limit 3.",
                          "requests", "rate_limit_exceeded"),
                    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None)}
        msg, typ, c = defaults.get(code, (message or "error", kind or "invalid_request_error", None))
        return {"error": {"message": message or msg, "type": typ, "param": None, "code": c}}

    async def openai_speech(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.openai_key}":
            return JSONResponse(self._openai_error(401), status_code=401)
        body = await request.json()
        self.bodies.append(body)
        text = body.get("input", "")
        if "#quota" in text and body.get("model") == "gpt-4o-mini-tts":  # this account is out of credit for that model
            self.calls[text] += 1
            return JSONResponse({"error": {"message": "You exceeded your current quota, please check your plan and billing "
                                           "details.", "type": "insufficient_quota", "param": None,
                                           "code": "insufficient_quota"}}, status_code=429)
        failed = self._marker(text, lambda c: self._openai_error(c))
        if failed is not None:
            return failed
        fmt = body.get("response_format", "mp3")
        if body.get("stream_format") == "sse":
            async def events():
                for i in range(0, len(self.pcm), 4800):
                    yield f"data: {json.dumps({'type': 'speech.audio.delta', 'audio': base64.b64encode(self.pcm[i:i + 4800]).decode()})}\n\n"
                    if i == 0 and "#hold" in text:
                        await asyncio.to_thread(self.release.wait, 20)
                usage = {"input_tokens": len(text.split()), "output_tokens": 10, "total_tokens": len(text.split()) + 10}
                yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        if fmt == "pcm":
            return await self._audio(text, self.pcm, "audio/pcm")
        return await self._audio(text, self.mp3, "audio/mpeg")

    # -- ElevenLabs ---------------------------------------------------------------------------

    @staticmethod
    def _eleven_error(code: int) -> dict[str, Any]:
        status = {401: "invalid_api_key", 429: "too_many_concurrent_requests", 500: "internal_server_error"}.get(code, "error")
        message = {401: "Invalid API key", 429: "Too many concurrent requests for your subscription.",
                   500: "An internal server error occurred."}.get(code, "error")
        return {"detail": {"status": status, "message": message}}

    async def eleven_voices(self, request: Request) -> Response:
        self.calls["GET /v1/voices"] += 1
        if request.headers.get("xi-api-key") != self.eleven_key:
            return JSONResponse(self._eleven_error(401), status_code=401)
        return JSONResponse({"voices": ELEVEN_VOICES})

    async def eleven_stream(self, request: Request) -> Response:
        if request.headers.get("xi-api-key") != self.eleven_key:
            return JSONResponse(self._eleven_error(401), status_code=401)
        voice_id = request.path_params["voice_id"]
        if voice_id not in {v["voice_id"] for v in ELEVEN_VOICES}:
            return JSONResponse({"detail": {"status": "voice_not_found", "message": "A voice with that ID was not found."}},
                                status_code=404)
        body = await request.json()
        self.bodies.append({**body, "_voice_id": voice_id})
        self.queries.append(dict(request.query_params))
        text = body.get("text", "")
        if len(text) > 5000:
            return JSONResponse({"detail": {"status": "max_character_limit_exceeded",
                                            "message": f"Text is {len(text)} characters; the limit is 5000."}}, status_code=400)
        failed = self._marker(text, self._eleven_error)
        if failed is not None:
            return failed
        output = request.query_params.get("output_format", "mp3_44100_128")
        if output.startswith("pcm_"):
            return await self._audio(text, self.pcm, "audio/pcm")
        if not re.match(r"mp3_\d+_\d+", output):
            return JSONResponse({"detail": {"status": "invalid_output_format", "message": output}}, status_code=422)
        return await self._audio(text, self.mp3, "audio/mpeg")
