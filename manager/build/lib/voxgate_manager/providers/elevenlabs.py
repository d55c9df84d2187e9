"""ElevenLabs' text-to-speech stream API behind the OpenAI request shape.

- voice: a name from our ``voices`` map or ElevenLabs' own voice list (GET /v1/voices, cached),
  or a voice id;
- ``voice_settings`` (stability, similarity_boost, style, use_speaker_boost) as extra request
  fields, top level or in a ``voice_settings`` object; ``speed`` goes into voice_settings.speed;
- formats: mp3 and pcm (24 kHz s16le, OpenAI's pcm) are asked for as such; wav is its pcm with a
  streamed WAV header; opus, aac and flac are transcoded from its pcm with PyAV (whole answer);
- text beyond ``max_chars`` (5,000) is sent as several requests, split at sentence ends, whose
  audio is joined in order (each with previous_text/next_text for continuity)."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voxgate_manager.providers.base import Provider, ProviderAnswer, ProviderError, ProviderStreamError
from voxgate_manager.providers.config import ElevenLabsProvider
from voxgate_manager.providers.http import json_message, make_client, open_stream
from voxgate_manager.providers.keys import resolve_key

PCM_RATE = 24000
SETTINGS = ("stability", "similarity_boost", "style", "use_speaker_boost")
CONTENT_TYPES = {"mp3": "audio/mpeg", "pcm": "audio/pcm", "wav": "audio/wav", "opus": "audio/ogg", "aac": "audio/aac",
                 "flac": "audio/flac"}
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters, cut after a sentence end where one is near, else
    at a space, else hard."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max((m.end() for m in _SENTENCE_END.finditer(window)), default=0)
        if cut < limit // 2:
            space = window.rfind(" ")
            cut = space + 1 if space > limit // 2 else limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def wav_header(rate: int = PCM_RATE) -> bytes:
    """A streamed WAV's header: 16-bit mono, sizes set to the 0xFFFFFFFF 'unknown' sentinel."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


def transcode_pcm(pcm: bytes, fmt: str, rate: int = PCM_RATE) -> bytes:
    """s16le mono to opus (Ogg), aac (ADTS) or flac with PyAV."""
    import av
    import numpy as np

    codec, container, out_rate = {"opus": ("libopus", "ogg", 48000), "aac": ("aac", "adts", rate),
                                  "flac": ("flac", "flac", rate)}[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=out_rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


class ElevenLabsSpeech(Provider):
    def __init__(self, model_id: str, cfg: ElevenLabsProvider) -> None:
        self.cfg = cfg
        self.name = "ElevenLabs"
        self.model_id = model_id
        self.client = make_client(cfg)
        self._voices: tuple[float, list[dict[str, Any]]] | None = None
        self._voices_lock = asyncio.Lock()

    def _key(self) -> str | None:
        return resolve_key(self.cfg.api_key_env, self.cfg.api_key_file)

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"xi-api-key": key} if key else {}

    async def _voice_list(self) -> list[dict[str, Any]]:
        async with self._voices_lock:
            if self._voices is not None and time.monotonic() - self._voices[0] < self.cfg.voices_ttl_s:
                return self._voices[1]
            key = self._key()
            request = self.client.build_request("GET", self.cfg.base_url + "/v1/voices", headers=self._headers(key))
            resp = await open_stream(self.client, request, self.cfg, self.name, key, lambda r, b: json_message(b))
            try:
                data = await resp.aread()
            finally:
                await resp.aclose()
            import json

            try:
                voices = json.loads(data).get("voices", [])
            except (ValueError, AttributeError):
                raise ProviderError(self.name, 502, f"provider {self.name}: its voice list was not JSON", "provider_error") from None
            self._voices = (time.monotonic(), voices)
            return voices

    async def voices(self) -> list[dict[str, Any]] | None:
        return [{"id": v.get("name"), "name": v.get("name"), "voice_id": v.get("voice_id"),
                 "labels": v.get("labels") or {}} for v in await self._voice_list()]

    async def resolve_voice(self, voice: Any) -> str:
        if isinstance(voice, dict):
            voice = voice.get("id")
        wanted = str(voice or self.cfg.default_voice or "")
        wanted = self.cfg.voices.get(wanted, wanted)
        voices = await self._voice_list()
        for v in voices:
            if v.get("voice_id") == wanted:
                return wanted
        for v in voices:
            if str(v.get("name", "")).lower() == wanted.lower():
                return str(v["voice_id"])
        if self.cfg.default_voice and wanted != self.cfg.default_voice:
            return await self.resolve_voice(self.cfg.default_voice)
        names = ", ".join(sorted(str(v.get("name")) for v in voices)[:20])
        raise ProviderError(self.name, 400, f"voice {voice!r} is not one of the {self.name} voices ({names})",
                            "voice_not_found", fallback=False)

    def _body(self, payload: dict[str, Any], text: str, prev: str | None, nxt: str | None) -> dict[str, Any]:
        settings = dict(payload.get("voice_settings") or {})
        for name in SETTINGS:
            if name in payload:
                settings[name] = payload[name]
        if payload.get("speed") not in (None, 1, 1.0):
            settings["speed"] = max(0.7, min(1.2, float(payload["speed"])))  # ElevenLabs' accepted range
        model = payload.get("model_id") or (payload.get("model") if str(payload.get("model", "")).startswith("eleven_") else None)
        body: dict[str, Any] = {"text": text, "model_id": model or self.cfg.model_id}
        if settings:
            body["voice_settings"] = settings
        for name in ("language_code", "seed", "apply_text_normalization"):
            if name in payload:
                body[name] = payload[name]
        if prev:
            body["previous_text"] = prev[-1000:]
        if nxt:
            body["next_text"] = nxt[:1000]
        return body

    async def _open(self, voice_id: str, body: dict[str, Any], output: str, key: str | None) -> httpx.Response:
        url = f"{self.cfg.base_url}/v1/text-to-speech/{voice_id}/stream"
        request = self.client.build_request("POST", url, params={"output_format": output}, json=body,
                                            headers={**self._headers(key), "accept": "audio/*"})
        return await open_stream(self.client, request, self.cfg, self.name, key, lambda r, b: json_message(b))

    async def speech(self, payload: dict[str, Any]) -> ProviderAnswer:
        fmt = payload.get("response_format") or "mp3"
        if fmt not in CONTENT_TYPES:
            raise ProviderError(self.name, 400, f"response_format {fmt!r} is not one of {', '.join(CONTENT_TYPES)}",
                                "invalid_value", fallback=False)
        text = payload.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ProviderError(self.name, 400, "input must be a non-empty string", "invalid_value", fallback=False)
        voice_id = await self.resolve_voice(payload.get("voice"))
        pieces = split_text(text, self.cfg.max_chars)
        output = "mp3_44100_128" if fmt == "mp3" else f"pcm_{PCM_RATE}"
        key = self._key()
        # the first piece is opened here, so its errors (and retries) happen before any audio
        first = await self._open(voice_id, self._body(payload, pieces[0], None, pieces[1] if len(pieces) > 1 else None), output, key)
        current: list[httpx.Response] = [first]

        async def raw() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                if i > 0:
                    body = self._body(payload, piece, pieces[i - 1], pieces[i + 1] if i + 1 < len(pieces) else None)
                    try:
                        current[0] = await self._open(voice_id, body, output, key)
                    except ProviderError as exc:  # audio was sent already: no retry, no fallback
                        raise ProviderStreamError(exc.message) from None
                try:
                    async for chunk in current[0].aiter_raw():
                        if chunk:
                            yield chunk
                except httpx.HTTPError as exc:
                    raise ProviderStreamError(f"provider {self.name} broke off mid-answer: {type(exc).__name__}") from None
                finally:
                    await current[0].aclose()

        async def chunks() -> AsyncIterator[bytes]:
            if fmt in ("mp3", "pcm"):
                async for c in raw():
                    yield c
            elif fmt == "wav":
                yield wav_header()
                async for c in raw():
                    yield c
            else:
                pcm = b"".join([c async for c in raw()])
                yield await asyncio.to_thread(transcode_pcm, pcm, fmt)

        async def close() -> None:
            await current[0].aclose()

        return ProviderAnswer(200, CONTENT_TYPES[fmt], chunks(), close)

    async def aclose(self) -> None:
        await self.client.aclose()
