"""The 23 languages and the text front ends some of them need.

``MTLTokenizer`` imports a front end lazily and, when it is missing, logs a warning and feeds
the raw text on: Japanese kanji, unvocalised Hebrew or Chinese characters without their Cangjie
codes then reach the model as text it was not trained on. voxgate refuses such a language up
front with a 400 that names what the server lacks, instead of speaking garbage.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from voxgate_server.engines.base import InvalidRequest

# chatterbox.mtl_tts.SUPPORTED_LANGUAGES (0.1.7), kept here so /v1/models needs no torch import.
LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "ms": "Malay", "nl": "Dutch",
    "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish",
    "sw": "Swahili", "tr": "Turkish", "zh": "Chinese",
}

# language -> (module MTLTokenizer imports, what to install)
FRONT_ENDS: dict[str, tuple[str, str]] = {
    "ja": ("pykakasi", "pip install pykakasi (kanji to hiragana)"),
    "he": ("dicta_onnx", "pip install dicta-onnx (Hebrew diacritics)"),
    "ru": ("russian_text_stresser", "russian_text_stresser (Russian stress marks; not on PyPI)"),
}


def normalise(requested: str) -> str:
    """'FR', 'fr-FR', 'pt_BR' -> 'fr', 'fr', 'pt'; a 400 for a language the model lacks."""
    wanted = requested.strip().lower().replace("_", "-").split("-")[0]
    if wanted in ("nb", "nn"):
        wanted = "no"
    if wanted not in LANGUAGES:
        raise InvalidRequest(f"chatterbox-multilingual cannot speak language '{requested}'. Supported: "
                             f"{', '.join(sorted(LANGUAGES))}.", param="language", code="unsupported_language")
    return wanted


def missing_front_end(language: str, tokenizer: Any | None) -> str | None:
    """What this server lacks to read ``language`` properly, or None."""
    if language in FRONT_ENDS:
        module, hint = FRONT_ENDS[language]
        if importlib.util.find_spec(module) is None:
            return hint
    if language == "zh" and tokenizer is not None:
        converter = getattr(tokenizer, "cangjie_converter", None)
        if converter is not None and not getattr(converter, "word2cj", None):
            return "Cangjie5_TC.json, which upstream fetches from ResembleAI/chatterbox when the tokenizer loads: start once with the Hub reachable"
    return None


def check_available(language: str, tokenizer: Any | None) -> None:
    hint = missing_front_end(language, tokenizer)
    if hint is not None:
        raise InvalidRequest(f"Language '{language}' ({LANGUAGES[language]}) is not available on this server: "
                             f"its text front end is missing ({hint}).", param="language",
                             code="language_unavailable")
