"""The chatterbox-multilingual engine: Turbo's engine with the multilingual model's parts.

Everything a request shares with Turbo is inherited: the voice library and its conditioning
cache (with the multilingual 6 s T3 prompt), the per-request token budget, seeds, cancellation
and sentence-by-sentence streaming (one ``AudioChunk`` per text chunk). What differs is the
loader (upstream's ``ChatterboxMultilingualTTS.from_local`` / ``from_pretrained``), the text
tokens (grapheme tokenizer with a ``[lang]`` tag, doubled for CFG), the token loop
(``MtlTokenGenerator``), the controls (``cfg_weight``, ``exaggeration``, ``min_p``; no
``top_k``) and the decoder (S3Gen's 10 flow steps, no appended silence, as upstream).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from voxgate_server.engines.base import (
    AudioChunk,
    Cancelled,
    EngineCapabilities,
    EngineError,
    InvalidRequest,
    SynthesisRequest,
    VoiceInfo,
)
from voxgate_server.engines.chatterbox_multilingual import languages
from voxgate_server.engines.chatterbox_multilingual.settings import MultilingualSettings
from voxgate_server.engines.chatterbox_multilingual.tokens import MtlSamplingParams, MtlTokenGenerator, speech_tokens_only
from voxgate_server.engines.chatterbox_turbo.checkpoint import load_model
from voxgate_server.engines.chatterbox_turbo.conditioning import conditionals_from_file, private_copy
from voxgate_server.engines.chatterbox_turbo.engine import BUILTIN_VOICE, SAMPLE_RATE, ChatterboxTurboEngine
from voxgate_server.engines.chatterbox_turbo.waveform import Vocoder
from voxgate_server.settings import Settings

log = logging.getLogger("voxgate.engine.chatterbox.multilingual")

MIN_VOICED_TOKENS = 3
ENC_COND_SECONDS = 6.0  # ChatterboxMultilingualTTS.ENC_COND_LEN: T3's prompt (150 tokens)
GENERATION_PARAMS = ("temperature", "top_p", "min_p", "repetition_penalty", "cfg_weight", "exaggeration",
                     "seed", "max_duration_s", "language")
RANGES: dict[str, tuple[float, float, str]] = {
    "min_p": (0.0, 1.0, "from 0 to 1"),
    "cfg_weight": (0.0, 5.0, "from 0 to 5"),
    "exaggeration": (0.0, 2.0, "from 0 to 2"),
}


def pad_short(tokens: Any) -> Any:
    """At least ``MIN_VOICED_TOKENS`` tokens, silence appended: S3Gen's 10-step decoder returns
    fewer samples than its own fade-in for a single token and fails (upstream does so too);
    Turbo never meets this because it always appends three silence tokens."""
    import torch
    from chatterbox.models.s3gen.const import S3GEN_SIL

    if tokens.numel() >= MIN_VOICED_TOKENS:
        return tokens
    pad = torch.full((MIN_VOICED_TOKENS - tokens.numel(),), S3GEN_SIL, dtype=tokens.dtype, device=tokens.device)
    return torch.cat([tokens, pad])


class ChatterboxMultilingualEngine(ChatterboxTurboEngine):
    id = "chatterbox-multilingual"

    def __init__(self, settings: Settings, engine_settings: MultilingualSettings | None = None) -> None:
        engine_settings = engine_settings or MultilingualSettings()
        super().__init__(settings, engine_settings)
        self.settings: MultilingualSettings = engine_settings
        try:  # a bad setting fails at start-up, naming the variable
            languages.normalise(engine_settings.default_language)
        except InvalidRequest as exc:
            raise EngineError(f"VOXGATE_CHATTERBOX_MTL_DEFAULT_LANGUAGE: {exc.message}") from None

    # -- the parts that differ from Turbo --------------------------------------------------------

    def load_checkpoint(self) -> Any:
        return load_model(self.settings, self.device, module="mtl_tts", class_name="ChatterboxMultilingualTTS")

    def make_token_generator(self, model: Any) -> Any:
        return MtlTokenGenerator(model.t3)

    def make_vocoder(self, model: Any, watermarker: Any | None) -> Vocoder:
        return Vocoder(model.s3gen, watermarker, model.sr, cfm_timesteps=None, silence_tokens=0)

    def compute_conditionals(self, path: Path) -> Any:
        model = self.model
        return conditionals_from_file(path, t3=model.t3, s3gen=model.s3gen, ve=model.ve, device=self.device,
                                      norm_loudness=self.settings.norm_loudness,
                                      enc_cond_seconds=ENC_COND_SECONDS, exaggeration=self.settings.exaggeration)

    # -- catalogue ----------------------------------------------------------------------------

    def capabilities(self) -> EngineCapabilities:
        base = super().capabilities()
        return dataclasses.replace(base, languages=tuple(languages.LANGUAGES), generation_params=GENERATION_PARAMS,
                                   paralinguistic_tags=())

    def voices(self) -> list[VoiceInfo]:
        out = []
        for v in super().voices():
            if v.id == BUILTIN_VOICE:
                v = dataclasses.replace(v, name="Chatterbox Multilingual built-in voice")
            out.append(v)
        return out

    # -- request options ----------------------------------------------------------------------

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        own = {k: options[k] for k in ("min_p", "cfg_weight", "exaggeration") if k in options}
        language = options.get("language")
        rest = {k: v for k, v in options.items() if k not in own and k not in ("language", "top_k")}
        out = super().validate_options(rest)
        for name, value in own.items():
            low, high, rule = RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise InvalidRequest(f"'{name}' must be a number {rule} (got {value}).", param=name,
                                     code="invalid_value")
            out[name] = float(value)
        if language is not None:
            code = languages.normalise(str(language))
            languages.check_available(code, self.model.tokenizer if self.model is not None else None)
            out["language"] = code
        return out

    def language_for(self, request: SynthesisRequest) -> str:
        """The request's language; else the voice's (library metadata) when we speak it; else
        ``VOXGATE_CHATTERBOX_MTL_DEFAULT_LANGUAGE``."""
        if request.options.get("language"):
            return str(request.options["language"])
        stored = self.library.get(request.voice) if request.voice != BUILTIN_VOICE else None
        candidate = stored.language if stored is not None else None
        try:
            code = languages.normalise(candidate) if candidate else None
        except InvalidRequest:
            code = None
        if code is None or languages.missing_front_end(code, self.model.tokenizer) is not None:
            code = languages.normalise(self.settings.default_language)
        languages.check_available(code, self.model.tokenizer)
        return code

    def sampling_params(self, options: Mapping[str, Any], max_tokens: int) -> MtlSamplingParams:  # type: ignore[override]
        s = self.settings
        return MtlSamplingParams(
            temperature=float(options.get("temperature", s.temperature)),
            top_p=float(options.get("top_p", s.top_p)),
            min_p=float(options.get("min_p", s.min_p)),
            repetition_penalty=float(options.get("repetition_penalty", s.repetition_penalty)),
            cfg_weight=float(options.get("cfg_weight", s.cfg_weight)),
            max_tokens=max_tokens,
        )

    # -- synthesis ----------------------------------------------------------------------------

    def text_tokens(self, text: str, language: str = "en") -> Any:  # type: ignore[override]
        """Upstream's ``generate()`` preparation: punc_norm, ``[lang]`` tag, the CFG pair, start/stop."""
        import torch
        import torch.nn.functional as F
        from chatterbox.mtl_tts import punc_norm

        ids = self.model.tokenizer.text_to_tokens(punc_norm(text), language_id=language).to(self.device)
        ids = torch.cat([ids, ids], dim=0)
        hp = self.model.t3.hp
        ids = F.pad(ids, (1, 0), value=hp.start_text_token)
        return F.pad(ids, (0, 1), value=hp.stop_text_token)

    def with_exaggeration(self, conds: Any, exaggeration: float) -> Any:
        """A private copy's T3 conditioning with the request's emotion input."""
        import torch

        current = conds.t3.emotion_adv
        if current is not None and float(current.reshape(-1)[0]) == float(exaggeration):
            return conds
        dtype = conds.t3.speaker_emb.dtype
        conds.t3 = dataclasses.replace(conds.t3, emotion_adv=torch.full((1, 1, 1), float(exaggeration),
                                                                        dtype=dtype, device=self.device))
        return conds

    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        if self.model is None:
            raise EngineError("chatterbox-multilingual is not loaded")
        options = request.options
        language = self.language_for(request)
        exaggeration = float(options.get("exaggeration", self.settings.exaggeration))
        shared = self.conditionals_for(request.voice or self.settings.default_voice)
        generator = self.new_generator(options.get("seed"))
        for _, text, budget in self.budgeted_chunks(request):
            conds = self.with_exaggeration(private_copy(shared), exaggeration)
            params = self.sampling_params(options, budget.next_cap)
            tokens = speech_tokens_only(self.token_generator.generate(
                self.text_tokens(text, language), conds.t3, params, generator, request.cancel))
            budget.spend(int(tokens.numel()))
            if request.cancel.is_set():
                raise Cancelled()
            if tokens.numel() == 0:  # stopped at once: a token's worth of silence, not an empty file
                yield AudioChunk(samples=np.zeros(SAMPLE_RATE // 25, dtype=np.float32), sample_rate=SAMPLE_RATE)
                continue
            samples = self.waveform(pad_short(tokens), conds, generator)
            yield self.sentence_chunk(request, text, samples)


