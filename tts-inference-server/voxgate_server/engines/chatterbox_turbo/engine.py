"""The chatterbox-turbo engine: voice cloning, per-request conditioning, bounded generation.

Per text chunk: tokenize -> ``T3TokenGenerator.generate`` (speech tokens; cap, cancel, seed)
-> ``Vocoder.synthesize`` (S3Gen + HiFT + watermark) -> one ``AudioChunk``. Nothing a request
does is written into the shared model: conditionals are cached per voice content and copied
per request; sampling uses the request's own generator.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from voxgate_server.engines.base import (
    AudioChunk,
    Cancelled,
    Engine,
    EngineCapabilities,
    EngineError,
    InvalidRequest,
    SynthesisRequest,
    VoiceInfo,
)
from voxgate_server.engines.chatterbox_turbo.checkpoint import PARALINGUISTIC_TAGS, choose_device, load_model
from voxgate_server.engines.chatterbox_turbo.conditioning import (
    ConditioningCache,
    conditionals_from_file,
    private_copy,
)
from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings
from voxgate_server.engines.chatterbox_turbo.tokens import TOKENS_PER_SECOND, SamplingParams, T3TokenGenerator
from voxgate_server.engines.chatterbox_turbo.waveform import Vocoder
from voxgate_server.engines.chatterbox_turbo.word_timing import word_times
from voxgate_server.engines.gpu.parking import GpuParking
from voxgate_server.settings import Settings
from voxgate_server.voice_library import VoiceLibrary, file_sha256

log = logging.getLogger("voxgate.engine.chatterbox")

BUILTIN_VOICE = "default"
SAMPLE_RATE = 24000
GENERATION_PARAMS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_duration_s")
MAX_SEED = 2**63 - 1


class TokenBudget:
    """Speech tokens a request may still make, and the most one text chunk may make."""

    def __init__(self, request_seconds: float, chunk_seconds: float) -> None:
        self.left = max(1, int(request_seconds * TOKENS_PER_SECOND))
        self.chunk_cap = max(1, int(chunk_seconds * TOKENS_PER_SECOND))

    @property
    def exhausted(self) -> bool:
        return self.left <= 0

    @property
    def next_cap(self) -> int:
        return min(self.left, self.chunk_cap)

    def spend(self, tokens: int) -> None:
        self.left -= max(1, tokens)


class ChatterboxTurboEngine(GpuParking, Engine):
    id = "chatterbox-turbo"

    def __init__(self, settings: Settings, engine_settings: ChatterboxSettings | None = None) -> None:
        self.settings = engine_settings or ChatterboxSettings()
        self.library = VoiceLibrary(settings.voices_dir)
        self.cache = ConditioningCache(self.settings.voice_cache_size)
        self.device = "cpu"
        self.model: Any = None
        # Swappable: a faster speech-token generator with the same ``generate`` signature.
        self.token_generator: Any = None
        self.vocoder: Vocoder | None = None
        self._load_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> None:
        with self._load_lock:
            if self.model is not None:
                return
            try:
                self.device = choose_device(self.settings.device)
                model = self.load_checkpoint()
            except EngineError:
                raise
            except ImportError as exc:
                raise EngineError("chatterbox-tts is not installed: bash scripts/install-chatterbox.sh VENV") from exc
            self.model = model
            self.token_generator = self.make_token_generator(model)
            watermarker = model.watermarker if self.settings.watermark else None
            self.vocoder = self.make_vocoder(model, watermarker)
            default = self.settings.default_voice
            if default != BUILTIN_VOICE and self.library.get(default) is None:
                raise EngineError(f"VOXGATE_CHATTERBOX_DEFAULT_VOICE={default!r} is not in the voice library")
            if default == BUILTIN_VOICE and model.conds is None:
                raise EngineError("the checkpoint has no conds.pt (built-in voice); set "
                                  "VOXGATE_CHATTERBOX_DEFAULT_VOICE to a library voice")
            log.info("%s loaded on %s (T3 %s, watermark %s)", self.id, self.device,
                     self.settings.dtype, "on" if watermarker is not None else "off")
            if self.settings.warmup:
                self._warm_up()

    # The three parts a sibling engine (chatterbox_multilingual) replaces.

    def load_checkpoint(self) -> Any:
        return load_model(self.settings, self.device)

    def make_token_generator(self, model: Any) -> Any:
        return T3TokenGenerator(model.t3)

    def make_vocoder(self, model: Any, watermarker: Any | None) -> Vocoder:
        return Vocoder(model.s3gen, watermarker, model.sr)

    def _warm_up(self) -> None:
        """One token through every stage, so /health turns 200 only when requests can be served
        (and the default voice's conditioning and first-call kernel set-up are done)."""
        request = SynthesisRequest(chunks=["Ready."], voice=self.settings.default_voice,
                                   options={"seed": 0, "max_duration_s": 1 / TOKENS_PER_SECOND})
        samples = sum(chunk.samples.size for chunk in self.synthesize(request))
        log.info("%s warm-up made %d samples", self.id, samples)

    def close(self) -> None:
        self.close_parking()
        self.model = None
        self.token_generator = None
        self.vocoder = None
        self.cache.clear()

    def max_concurrency(self) -> int | None:
        return 1  # one GPU worker; the server queues the rest

    # -- catalogue ----------------------------------------------------------------------------

    def capabilities(self) -> EngineCapabilities:
        on_gpu = self.device == "cuda"
        return EngineCapabilities(
            sample_rate=SAMPLE_RATE,
            languages=("en",),
            max_chunk_chars=self.settings.chunk_chars,
            streaming=True,
            cloning=True,
            instructions=False,
            native_speed=False,
            generation_params=GENERATION_PARAMS,
            paralinguistic_tags=PARALINGUISTIC_TAGS,
            device=self.device,
            cost_hint="local GPU" if on_gpu else "local CPU: several seconds of compute per second of speech",
            word_timestamps=True,  # laid over the speech-token timeline (word_timing.py)
        )

    def voices(self) -> list[VoiceInfo]:
        out: list[VoiceInfo] = []
        if self.model is None or self.model.conds is not None:
            out.append(VoiceInfo(id=BUILTIN_VOICE, name="Chatterbox Turbo built-in voice", language="en",
                                 description="The checkpoint's own reference voice (conds.pt)"))
        for v in self.library.list():
            if v.id == BUILTIN_VOICE:
                continue
            out.append(VoiceInfo(id=v.id, name=v.name, language=v.language, description=v.description,
                                 builtin=False, sha256=v.sha256 or None))
        return out

    def default_voice(self) -> str:
        return self.settings.default_voice

    def openai_voice_map(self) -> dict[str, str]:
        """OpenAI voice names -> voices here (see settings.DEFAULT_OPENAI_VOICE_MAP)."""
        table = self.settings.openai_voice_map()
        default = self.settings.default_voice
        return {name: (default if target == BUILTIN_VOICE else target) for name, target in table.items()}

    # -- request options ----------------------------------------------------------------------

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name not in GENERATION_PARAMS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidRequest(f"'{name}' must be a finite number.", param=name, code="invalid_value")
            out[name] = value
        cap = self.settings.max_duration_cap_s
        checks = {
            "temperature": (lambda v: 0 < v <= 2.0, "greater than 0 and at most 2"),
            "top_p": (lambda v: 0 < v <= 1.0, "greater than 0 and at most 1"),
            "top_k": (lambda v: isinstance(v, int) and 0 <= v <= 6563, "an integer from 0 (off) to 6563"),
            "repetition_penalty": (lambda v: 1.0 <= v <= 3.0, "from 1 to 3"),
            "seed": (lambda v: isinstance(v, int) and 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
            "max_duration_s": (lambda v: 0 < v <= cap, f"greater than 0 and at most {cap:g} seconds"),
        }
        for name, value in out.items():
            ok, rule = checks[name]
            if not ok(value):
                raise InvalidRequest(f"'{name}' must be {rule} (got {value}).", param=name, code="invalid_value")
        return out

    def sampling_options(self, options: Mapping[str, Any]) -> dict[str, float | int]:
        """The request's sampling controls over the engine's defaults (shared by both paths)."""
        s = self.settings
        return {
            "temperature": float(options.get("temperature", s.temperature)),
            "top_p": float(options.get("top_p", s.top_p)),
            "top_k": int(options.get("top_k", s.top_k)),
            "repetition_penalty": float(options.get("repetition_penalty", s.repetition_penalty)),
        }

    def sampling_params(self, options: Mapping[str, Any], max_tokens: int) -> SamplingParams:
        return SamplingParams(**self.sampling_options(options), max_tokens=max_tokens)

    def budgeted_chunks(self, request: SynthesisRequest) -> Iterator[tuple[int, str, TokenBudget]]:
        """The request's text chunks with the token budget that bounds each one.

        Skips empty chunks, stops (logging what is left unspoken) once ``max_duration_s`` is
        spent, and raises ``Cancelled`` when the client has gone. Callers ``spend`` what each
        chunk used.
        """
        budget = TokenBudget(
            float(request.options.get("max_duration_s", self.settings.max_duration_s)),
            self.settings.chunk_max_duration_s,
        )
        for index, text in enumerate(request.chunks):
            if not text.strip():
                continue
            if budget.exhausted:
                log.info("max_duration_s reached: %d text chunk(s) not spoken", len(request.chunks) - index)
                return
            if request.cancel.is_set():
                raise Cancelled()
            yield index, text, budget

    # -- voices -------------------------------------------------------------------------------

    def conditionals_for(self, voice_id: str) -> Any:
        """Cached conditionals of a voice (shared: copy with ``private_copy`` before use)."""
        model = self.model
        if voice_id == BUILTIN_VOICE and model.conds is not None:
            return model.conds
        stored = self.library.get(voice_id)
        if stored is None:
            raise InvalidRequest(f"Voice '{voice_id}' is not in the voice library.", param="voice",
                                 code="voice_not_found")
        key = file_sha256(stored.path)  # a replaced file gets a new key, so it is re-read
        return self.cache.get_or_compute(key, lambda: self.compute_conditionals(stored.path))

    def compute_conditionals(self, path: Path) -> Any:
        """A voice clip's conditionals, computed (the cache's miss path)."""
        model = self.model
        return conditionals_from_file(path, t3=model.t3, s3gen=model.s3gen, ve=model.ve, device=self.device,
                                      norm_loudness=self.settings.norm_loudness)

    # -- synthesis ----------------------------------------------------------------------------

    def text_tokens(self, text: str) -> Any:
        from chatterbox.tts_turbo import punc_norm

        ids = self.model.tokenizer(punc_norm(text), return_tensors="pt", truncation=True).input_ids
        return ids.to(self.device)

    def speech_tokens(self, text: str, conds: Any, params: SamplingParams, generator: Any,
                      cancel: threading.Event) -> Any:
        """Text -> speech tokens (the part a faster generator replaces)."""
        return self.token_generator.generate(self.text_tokens(text), conds.t3, params, generator, cancel)

    def waveform(self, tokens: Any, conds: Any, generator: Any) -> Any:
        """Speech tokens -> float32 24 kHz samples (watermarked when enabled)."""
        assert self.vocoder is not None
        return self.vocoder.synthesize(tokens, conds.gen, generator)

    def new_generator(self, seed: int | None) -> Any:
        import torch

        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        if self.model is None:
            raise EngineError("chatterbox-turbo is not loaded")
        options = request.options
        shared = self.conditionals_for(request.voice or self.settings.default_voice)
        generator = self.new_generator(options.get("seed"))
        for _, text, budget in self.budgeted_chunks(request):
            conds = private_copy(shared)
            params = self.sampling_params(options, budget.next_cap)
            tokens = self.speech_tokens(text, conds, params, generator, request.cancel)
            budget.spend(int(tokens.numel()))
            if request.cancel.is_set():
                raise Cancelled()
            samples = self.waveform(tokens, conds, generator)
            yield self.sentence_chunk(request, text, samples)

    @staticmethod
    def sentence_chunk(request: SynthesisRequest, text: str, samples: Any) -> AudioChunk:
        """One text chunk's whole audio, with its words when the request asked for them."""
        words = word_times(text, samples, SAMPLE_RATE) if request.options.get("timestamps") == "word" else None
        return AudioChunk(samples=samples, sample_rate=SAMPLE_RATE, segment_end=True, words=words)
