"""Voice conditioning for Turbo, computed per voice and never written into the shared model.

Upstream's ``prepare_conditionals`` stores its result in ``model.conds``, which every request
reads; with two voices in flight that mixes voices. Here the same computation returns a
``Conditionals`` value, a bounded LRU keeps them by the clip's content hash, and each request
gets a shallow copy (T3 and S3Gen write derived tensors into the objects they are given).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxgate_server.engines.base import InvalidRequest

# Upstream asserts "Audio prompt must be longer than 5 seconds!".
MIN_REFERENCE_SECONDS = 5.0
ENC_COND_SECONDS = 15  # T3 prompt: the first 15 s at 16 kHz (375 speech tokens)
DEC_COND_SECONDS = 10  # S3Gen prompt: the first 10 s at 24 kHz


def normalise_loudness(wave: np.ndarray, sr: int, target_lufs: float = -27.0) -> np.ndarray:
    """Upstream's loudness normalisation, returning float32 (the numpy-2 fix, chatterbox #499)."""
    import pyloudnorm

    try:
        loudness = pyloudnorm.Meter(sr).integrated_loudness(wave)
        gain = 10.0 ** ((target_lufs - loudness) / 20.0)
        if math.isfinite(gain) and gain > 0.0:
            wave = wave * gain
    except ValueError:  # clip shorter than the meter's block: keep it as it is
        pass
    return np.asarray(wave, dtype=np.float32)


def conditionals_from_wave(
    wave: np.ndarray, sr: int, *, t3: Any, s3gen: Any, ve: Any, device: str, norm_loudness: bool = True,
    enc_cond_seconds: float = ENC_COND_SECONDS, exaggeration: float = 0.5,
) -> Any:
    """``prepare_conditionals`` as a pure function of a 24 kHz clip; returns ``Conditionals``.

    Defaults are Turbo's; the multilingual model prompts T3 with the first 6 s
    (``enc_cond_seconds``) and, unlike Turbo, reads ``exaggeration`` (its emotion input).
    """
    import librosa
    import torch
    from chatterbox.models.s3gen import S3GEN_SR
    from chatterbox.models.s3tokenizer import S3_SR
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts_turbo import Conditionals

    if sr != S3GEN_SR:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=S3GEN_SR)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size / S3GEN_SR <= MIN_REFERENCE_SECONDS:
        raise InvalidRequest(
            f"The voice clip must be longer than {MIN_REFERENCE_SECONDS:g} seconds "
            f"(it is {wave.size / S3GEN_SR:.2f} s).", param="voice", code="voice_too_short")
    if norm_loudness:
        wave = normalise_loudness(wave, S3GEN_SR)
    wave_16k = librosa.resample(wave, orig_sr=S3GEN_SR, target_sr=S3_SR).astype(np.float32)

    with torch.inference_mode():
        gen = s3gen.embed_ref(wave[: DEC_COND_SECONDS * S3GEN_SR], S3GEN_SR, device=device)
        prompt_tokens, _ = s3gen.tokenizer.forward(
            [wave_16k[: int(enc_cond_seconds * S3_SR)]], max_len=t3.hp.speech_cond_prompt_len)
        prompt_tokens = torch.atleast_2d(prompt_tokens).to(device)
        speaker = torch.from_numpy(ve.embeds_from_wavs([wave_16k], sample_rate=S3_SR))
        speaker = speaker.mean(dim=0, keepdim=True).to(device)
        t3_dtype = next(t3.parameters()).dtype
        t3_cond = T3Cond(
            speaker_emb=speaker,
            cond_prompt_speech_tokens=prompt_tokens,
            emotion_adv=exaggeration * torch.ones(1, 1, 1),  # Turbo's T3 ignores it
        ).to(device=device, dtype=t3_dtype)
    return Conditionals(t3_cond, gen)


def conditionals_from_file(path: Path, **kwargs: Any) -> Any:
    import librosa
    from chatterbox.models.s3gen import S3GEN_SR

    try:
        wave, sr = librosa.load(str(path), sr=S3GEN_SR)
    except Exception as exc:  # librosa/soundfile/audioread raise many types for bad files
        raise InvalidRequest(f"The voice clip {path.name} could not be decoded: {exc}",
                             param="voice", code="invalid_voice_clip") from exc
    return conditionals_from_wave(wave, sr, **kwargs)


def private_copy(conds: Any) -> Any:
    """A per-request view of cached conditionals: tensors shared, containers not.

    ``T3.prepare_conditioning`` sets ``cond_prompt_speech_emb`` on the ``T3Cond`` it gets and
    ``S3Gen`` re-assigns entries of ``ref_dict``; on a copy those writes stay private.
    """
    return type(conds)(dataclasses.replace(conds.t3, cond_prompt_speech_emb=None), dict(conds.gen))


class ConditioningCache:
    """Bounded LRU of conditionals by content hash; computes each key once even when raced."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[str, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key]
            value = compute()
            with self._lock:
                self.misses += 1
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._computing.pop(key, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
