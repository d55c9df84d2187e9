"""The one interface every speech engine implements.

The HTTP layer only ever sees these types. An engine is a blocking object: the server calls
``load`` and ``synthesize`` from worker threads, never from the event loop, and bounds how many
run at once (see ``voxgate_server.synthesis.scheduler``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALL_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class EngineError(Exception):
    """An engine failed for a reason that is not the client's fault (reported as 500/503)."""


class InvalidRequest(Exception):
    """A request an engine cannot serve because of what the client sent (reported as 400)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class Cancelled(Exception):
    """Raised inside an engine when the request's cancel event is set."""


@dataclass(frozen=True)
class VoiceInfo:
    """A voice an engine can speak with. ``id`` is what requests name."""

    id: str
    name: str
    language: str = "en"
    description: str = ""
    builtin: bool = True
    sha256: str | None = None  # a cloned voice's clip hash (voice library), so caches can tell a replaced clip


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do; served on ``/v1/models`` so clients can choose."""

    sample_rate: int
    languages: tuple[str, ...] = ("en",)
    formats: tuple[str, ...] = ALL_FORMATS
    max_input_chars: int = 4096
    # The server splits text into chunks of at most this many characters (whole sentences
    # where possible) and hands the engine one list of chunks per request.
    max_chunk_chars: int = 400
    streaming: bool = True
    cloning: bool = False
    instructions: bool = False
    # False: the server time-stretches the engine's audio to honour ``speed``.
    native_speed: bool = False
    # Optional request fields this engine honours (temperature, seed, ...).
    generation_params: tuple[str, ...] = ()
    paralinguistic_tags: tuple[str, ...] = ()
    device: str = "cpu"
    cost_hint: str = "free: local CPU"
    # True: the engine's AudioChunks carry ``words`` [(word, start_s, end_s)] relative to the
    # chunk, and the server can answer ``"timestamps": "word"`` (voxgate_server.timing).
    word_timestamps: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "languages": list(self.languages),
            "formats": list(self.formats),
            "max_input_chars": self.max_input_chars,
            "streaming": self.streaming,
            "sse": self.streaming,
            "cloning": self.cloning,
            "instructions": self.instructions,
            "speed": "native" if self.native_speed else "time-stretch",
            "generation_params": list(self.generation_params),
            "paralinguistic_tags": list(self.paralinguistic_tags),
            "device": self.device,
            "cost_hint": self.cost_hint,
            "word_timestamps": self.word_timestamps,
        }


@dataclass(frozen=True)
class ParkSupport:
    """Whether an engine can park: give its memory (GPU memory above all) back while the process,
    its weights' host copy and its caches stay alive, so that waking skips the cold start.

    ``mechanism`` names how (``cuda-checkpoint``: the driver moves device memory to the host;
    ``reload``: a CPU engine drops its session and loads it again); ``reason`` says why not.
    """

    supported: bool
    mechanism: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"supported": self.supported, "mechanism": self.mechanism, "reason": self.reason}


NOT_PARKABLE = ParkSupport(False, reason="this engine cannot park")


@dataclass
class SynthesisRequest:
    """One request, already validated and with its voice resolved to the engine's own id."""

    chunks: list[str]
    voice: str
    speed: float = 1.0
    instructions: str | None = None
    # Validated generation controls the engine advertised in ``generation_params``.
    options: Mapping[str, Any] = field(default_factory=dict)
    # Set by the server when the client goes away; engines check it between steps.
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class AudioChunk:
    """Mono float32 PCM in [-1, 1].

    ``segment_end`` marks the last piece of one text chunk: the server fades and pauses there,
    so an engine that streams below the sentence leaves it False on the pieces in between.
    """

    samples: np.ndarray
    sample_rate: int
    segment_end: bool = True
    # (word, start_s, end_s) from the chunk's first sample, when the request asked for word
    # timings and the engine has them (``EngineCapabilities.word_timestamps``)
    words: list[tuple[str, float, float]] | None = None


class Engine(ABC):
    """A speech engine. Subclasses set ``id`` and implement the four methods."""

    id: str = ""

    @abstractmethod
    def load(self) -> None:
        """Load weights; blocking. Called once, off the event loop, before any synthesis."""

    @abstractmethod
    def capabilities(self) -> EngineCapabilities: ...

    @abstractmethod
    def voices(self) -> list[VoiceInfo]: ...

    @abstractmethod
    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        """Yield audio as it is made; blocking, run in a worker thread.

        Must stop soon after ``request.cancel`` is set (raise ``Cancelled`` or return).
        """

    def max_concurrency(self) -> int | None:
        """Requests this engine synthesizes at once; None means the server-wide setting.

        A GPU engine with one worker returns 1 (or its batch size when it batches requests).
        """
        return None

    def default_voice(self) -> str:
        return self.voices()[0].id

    def resolve_voice(self, voice: str) -> str | None:
        """A voice spec beyond the listed ids (kokoro's mixes "a(2)+b(1)"), as the id to synthesize
        with; None when this engine does not know it. Raise ``InvalidRequest`` for a bad spec."""
        return None

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check engine-specific generation controls; raise ``InvalidRequest`` on bad ones."""
        return dict(options)

    def warmup_status(self) -> dict[str, Any] | None:
        """The warm-up an engine still runs after it reported ready (graph captures, a warm-up
        burst), reported on ``/health`` as ``warmup``: ready means it serves, not yet at full
        speed, and a client or benchmark that wants the steady state waits for ``"state":
        "done"``. Default: None, nothing runs after ready."""
        return None

    def park_support(self) -> ParkSupport:
        """Whether ``park``/``wake`` work here; asked once, after ``load``. Default: they do not,
        and a manager stops the server instead of parking it."""
        return NOT_PARKABLE

    def prepare_park(self) -> None:
        """Called once after a supported ``park_support``, off the event loop and without delaying
        ready: work that would otherwise make the first park slower. Default: none."""

    def park(self) -> None:
        """Give memory back; blocking, called with no request in flight. The server holds new
        requests until ``wake`` has returned."""
        raise EngineError(f"engine {self.id} cannot park")

    def wake(self) -> None:
        """Undo ``park``; blocking. After it returns the engine synthesizes as before."""
        raise EngineError(f"engine {self.id} cannot park")

    def close(self) -> None:
        """Release resources (weights, threads). Optional."""
