"""One Wyoming connection: ``describe``, ``synthesize`` and streamed text (``synthesize-start``,
``synthesize-chunk``…, ``synthesize-stop``).

Events are read by the library's loop while a worker task speaks, so a sentence completed by a
``synthesize-chunk`` is requested from the model at once (audio can flow while the client's LLM is
still writing the next sentence), and a client that hangs up is noticed at once: its worker is
cancelled, which closes the model server connection and frees the model's slot. Work is spoken in
arrival order, one request at a time per connection (it is one loudspeaker).

Streaming follows wyoming-piper, which Home Assistant is built against: each sentence is one
``audio-start``/``audio-chunk``…/``audio-stop`` run, then ``synthesize-stopped``; the legacy
``synthesize`` a streaming client also sends is ignored. Errors are ``error`` events; the
connection stays open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sentence_stream import SentenceBoundaryDetector
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, SelectProgram
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from voxgate_manager.speech_client import SpeechFailed, open_speech
from voxgate_manager.wyoming.info import SEPARATOR, build_info

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController
    from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.wyoming")

RATE, WIDTH, CHANNELS = 24000, 2, 1  # the OpenAI "pcm" format every voxgate server (and OpenAI) sends
CHUNK_BYTES = 1024 * WIDTH  # samples per audio-chunk as wyoming-piper sends them
LOOKAHEAD = 1  # sentences requested from the model before their turn


class VoiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def resolve_voice(manager: "Manager", voice: SynthesizeVoice | None, program: str | None) -> tuple["ModelController", str]:
    """(model, voice id) for a Wyoming voice: ``model:voice``, a model's name (its default voice, or
    ``speaker``), or a bare voice of the selected program's model (else the default model)."""
    name = voice.name if voice is not None else None
    speaker = voice.speaker if voice is not None else None
    ctl: ModelController | None = None
    voice_id: str | None = None
    if name:
        model_part, sep, rest = name.partition(SEPARATOR)
        if sep and rest and manager.resolve(model_part) is not None:
            ctl, voice_id = manager.resolve(model_part), rest
        elif _is_model_name(manager, name):
            ctl, voice_id = manager.resolve(name), speaker
        else:
            voice_id = name
    if ctl is None:
        ctl = manager.resolve(program)
        if ctl is None:
            raise VoiceError("model_not_found", f"no model named {program!r}")
    if not voice_id:
        voice_id = manager.catalog.default_voice(ctl)
    known = manager.catalog.voice_ids(ctl)
    if known is not None and voice_id not in known:
        raise VoiceError("voice_not_found", f"voice {voice_id!r} is not available for model {ctl.id!r}; "
                                            f"available: {', '.join(sorted(known))}")
    return ctl, voice_id


def _is_model_name(manager: "Manager", name: str) -> bool:
    return any(name in spec.names for spec in manager.models.models)


def clean_text(text: str) -> str:
    return " ".join(text.strip().splitlines()).strip()


@dataclass
class _Stream:
    """A text stream in progress (synthesize-start … synthesize-stop)."""

    detector: SentenceBoundaryDetector = field(default_factory=SentenceBoundaryDetector)
    ctl: "ModelController | None" = None
    voice: str = ""
    failed: bool = False  # an error was sent: the rest of this stream is not spoken


@dataclass(eq=False)
class _Speak:
    ctl: "ModelController"
    voice: str
    text: str
    stream: _Stream | None = None


@dataclass
class _Stopped:
    stream: _Stream


class WyomingHandler(AsyncEventHandler):
    def __init__(self, manager: "Manager", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.manager = manager
        self.program: str | None = None  # select-program: the model a bare voice name belongs to
        self.stream: _Stream | None = None
        self.work: collections.deque[_Speak | _Stopped] = collections.deque()
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None
        self.speaking = False
        self.ahead: dict[_Speak, asyncio.Future[Any]] = {}  # requests opened before their turn
        self.gone = False

    # -- events in ----------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except (ConnectionError, OSError):
            return False
        except Exception as exc:  # never a dropped connection for a bug: say it
            log.exception("wyoming event %s failed", event.type)
            await self.write_event(Error(text=f"voxgate could not handle {event.type}: {exc}", code="internal_error").event())
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(build_info(self.manager).event())
        elif SelectProgram.is_type(event.type):
            name = SelectProgram.from_event(event).name
            if self.manager.resolve(name) is None:
                await self.write_event(Error(text=f"no program (model) named {name!r}", code="model_not_found").event())
            else:
                self.program = name
        elif Synthesize.is_type(event.type):
            if self.stream is not None:
                return  # sent by streaming clients for older servers; the chunks carry the text
            syn = Synthesize.from_event(event)
            try:
                ctl, voice = resolve_voice(self.manager, syn.voice, self.program)
            except VoiceError as exc:
                await self.write_event(Error(text=exc.message, code=exc.code).event())
                return
            self._queue(_Speak(ctl, voice, clean_text(syn.text)))
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self.stream = stream = _Stream()
            try:
                stream.ctl, stream.voice = resolve_voice(self.manager, start.voice, self.program)
            except VoiceError as exc:
                stream.failed = True
                await self.write_event(Error(text=exc.message, code=exc.code).event())
        elif SynthesizeChunk.is_type(event.type):
            if self.stream is None:
                await self.write_event(Error(text="synthesize-chunk outside synthesize-start/stop", code="no_stream").event())
                return
            for sentence in self.stream.detector.add_chunk(SynthesizeChunk.from_event(event).text):
                self._queue_sentence(self.stream, sentence)
        elif SynthesizeStop.is_type(event.type):
            stream, self.stream = self.stream, None
            if stream is None:
                await self.write_event(SynthesizeStopped().event())
                return
            self._queue_sentence(stream, stream.detector.finish())
            self._queue(_Stopped(stream))

    def _queue_sentence(self, stream: _Stream, sentence: str) -> None:
        text = clean_text(sentence)
        if text and not stream.failed and stream.ctl is not None:
            self._queue(_Speak(stream.ctl, stream.voice, text, stream))

    def _queue(self, item: _Speak | _Stopped) -> None:
        self.work.append(item)
        self.arrived.set()
        if self.worker is None:
            self.worker = asyncio.create_task(self._work())
        self._prefetch()

    def busy(self) -> bool:
        """Whether speech is being made or waits to be (shutdown lets it finish first)."""
        return not self.gone and (self.speaking or bool(self.work))

    async def disconnect(self) -> None:
        """The client hung up: stop speaking for nobody and free the model's slots."""
        self.gone = True
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.worker
        self._drop_ahead()

    # -- audio out ----------------------------------------------------------------------------

    def _prefetch(self) -> None:
        """Request the sentence after the one being spoken (LOOKAHEAD): its audio is being made
        while the current one plays, so sentences follow without a gap for the model's first-audio
        latency. The model's concurrency still bounds it (the request waits for a slot)."""
        if not self.speaking or len(self.ahead) >= LOOKAHEAD:
            return
        for item in self.work:
            if isinstance(item, _Stopped):
                continue
            if item in self.ahead or not item.text:
                continue
            if item.stream is not None and item.stream.failed:
                continue
            self.ahead[item] = asyncio.ensure_future(self._open(item))
            if len(self.ahead) >= LOOKAHEAD:
                return

    def _drop_ahead(self) -> None:
        for task in self.ahead.values():
            task.cancel()
            task.add_done_callback(_close_opened)
        self.ahead.clear()

    async def _open(self, job: _Speak):  # noqa: ANN202 - a SpeechStream
        payload = {"input": job.text, "voice": job.voice, "response_format": "pcm"}
        return await open_speech(self.manager, job.ctl, payload, self._is_gone)

    async def _work(self) -> None:
        try:
            while True:
                while not self.work:
                    self.arrived.clear()
                    await self.arrived.wait()
                item = self.work.popleft()
                if isinstance(item, _Stopped):
                    await self.write_event(SynthesizeStopped().event())
                elif item.stream is None or not item.stream.failed:
                    self.speaking = True
                    try:
                        await self._speak(item)
                    finally:
                        self.speaking = False
                if isinstance(item, _Speak) and item.stream is not None and item.stream.failed:
                    for job in [j for j in self.ahead if j.stream is item.stream]:
                        task = self.ahead.pop(job)
                        task.cancel()
                        task.add_done_callback(_close_opened)
        except (ConnectionError, OSError):
            self.gone = True  # the client's socket broke while audio was written

    async def _is_gone(self) -> bool:
        return self.gone

    async def _speak(self, job: _Speak) -> None:
        if not job.text:
            await self.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
            await self.write_event(AudioStop().event())
            return
        opening = self.ahead.pop(job, None)
        self._prefetch()  # the next one, while this one is spoken
        try:
            audio = await (opening if opening is not None else self._open(job))
        except SpeechFailed as exc:
            if job.stream is not None:
                job.stream.failed = True
            await self.write_event(Error(text=exc.message, code=exc.code).event())
            return
        try:
            await self.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
            carry = b""
            try:
                async for data in audio:
                    data = carry + data
                    cut = len(data) - len(data) % WIDTH  # whole samples only: the next read has the rest
                    carry = data[cut:]
                    for i in range(0, cut, CHUNK_BYTES):
                        await self.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS,
                                                          audio=data[i:min(i + CHUNK_BYTES, cut)]).event())
            except SpeechFailed as exc:
                if job.stream is not None:
                    job.stream.failed = True
                await self.write_event(Error(text=exc.message, code=exc.code).event())
                return
            await self.write_event(AudioStop().event())
        finally:
            audio.close()


def _close_opened(task: "asyncio.Future[Any]") -> None:
    """A request opened ahead and not spoken (client gone, stream failed): free its slot."""
    if task.cancelled() or task.exception() is not None:
        return
    task.result().close()
