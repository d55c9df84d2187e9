"""Kokoro voice styles: loading a v1.0 voices file, and weighted mixes such as ``af_bella(2)+af_sky(1)``.

A mix is a weighted mean of the styles (Kokoro's own recipe for blending voices); the weights are
normalised, so ``a(2)+b(2)`` equals ``a+b``. The language of a mix is its first voice's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voxgate_server.engines.base import InvalidRequest

STYLE_DIM = 256
MAX_MIX_PARTS = 8

# Kokoro's voice ids start with a language letter and a gender letter: af_heart, jm_kumo.
LANGUAGES: dict[str, str] = {
    "a": "en-us", "b": "en-gb", "e": "es", "f": "fr", "h": "hi", "i": "it", "j": "ja", "p": "pt-br", "z": "zh",
}

_PART = re.compile(r"^\s*([A-Za-z0-9_\-.]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


def voice_language(voice_id: str) -> str:
    return LANGUAGES.get(voice_id[:1].lower(), "en-us")


def load_voices(source: Path | BinaryIO) -> dict[str, np.ndarray]:
    """Styles by voice id, each (N, 256) float32; accepts an npz (voices-v1.0.bin) or a folder of .npy."""
    if isinstance(source, Path) and source.is_dir():
        styles = {p.stem: np.load(p) for p in sorted(source.glob("*.npy"))}
    else:
        with np.load(source) as npz:
            styles = {k: npz[k] for k in npz.files}
    out: dict[str, np.ndarray] = {}
    for name, arr in styles.items():
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim < 2 or arr.shape[-1] != STYLE_DIM:
            raise ValueError(f"voice {name!r} has shape {arr.shape}; Kokoro v1.0 styles are (N, 1, {STYLE_DIM})")
        out[name] = arr.reshape(-1, STYLE_DIM)
    if not out:
        raise ValueError(f"no voices in {source}")
    return out


@dataclass(frozen=True)
class VoiceMix:
    """A parsed voice spec: (voice id, normalised weight) pairs, in the order given."""

    parts: tuple[tuple[str, float], ...]

    @property
    def language(self) -> str:
        return voice_language(self.parts[0][0])

    @property
    def canonical(self) -> str:
        if len(self.parts) == 1:
            return self.parts[0][0]
        return "+".join(f"{v}({w:g})" for v, w in self.parts)


def parse_mix(spec: str, known: set[str]) -> VoiceMix:
    """Parse ``a``, ``a+b`` or ``a(2)+b(1)``; raise ``InvalidRequest`` (a 400 naming ``voice``) on any fault."""
    raw_parts = spec.split("+")
    if len(raw_parts) > MAX_MIX_PARTS:
        raise InvalidRequest(f"A voice mix may combine at most {MAX_MIX_PARTS} voices; got {len(raw_parts)}.",
                             param="voice", code="invalid_voice")
    weights: dict[str, float] = {}
    for raw in raw_parts:
        m = _PART.match(raw)
        if m is None or not m.group(1):
            raise InvalidRequest(f"Cannot parse voice mix {spec!r}: write it as 'voice_a(2)+voice_b(1)'.",
                                 param="voice", code="invalid_voice")
        name, weight_text = m.group(1), m.group(2)
        if name not in known:
            lowered = {k.lower(): k for k in known}
            if name.lower() not in lowered:
                raise InvalidRequest(f"Voice {name!r} in mix {spec!r} does not exist. Available: {', '.join(sorted(known))}.",
                                     param="voice", code="invalid_voice")
            name = lowered[name.lower()]
        weight = 1.0
        if weight_text is not None:
            try:
                weight = float(weight_text)
            except ValueError:
                raise InvalidRequest(f"Weight {weight_text!r} of voice {name!r} is not a number.",
                                     param="voice", code="invalid_voice") from None
            if not np.isfinite(weight) or weight <= 0:
                raise InvalidRequest(f"Weight of voice {name!r} must be a positive number; got {weight_text!r}.",
                                     param="voice", code="invalid_voice")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    return VoiceMix(tuple((name, w / total) for name, w in weights.items()))


def mix_styles(mix: VoiceMix, styles: dict[str, np.ndarray]) -> np.ndarray:
    rows = min(styles[name].shape[0] for name, _ in mix.parts)
    out = np.zeros((rows, STYLE_DIM), dtype=np.float32)
    for name, weight in mix.parts:
        out += weight * styles[name][:rows]
    return out
