"""Independent checks on returned audio: PyAV decodes it, PocketSphinx transcribes it."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import av
import numpy as np


@dataclass
class Decoded:
    codec: str
    sample_rate: int
    samples: np.ndarray  # float32 mono

    @property
    def duration(self) -> float:
        return self.samples.size / self.sample_rate


def decode(data: bytes, fmt: str) -> Decoded:
    if fmt == "pcm":
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return Decoded("pcm_s16le", 24000, pcm)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        codec, rate = stream.codec_context.name, stream.codec_context.sample_rate
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    arrays = []
    for fr in frames:
        a = fr.astype(np.float32)
        if a.dtype.kind == "i" or np.abs(a).max(initial=0) > 1.5:
            a = a / 32768.0
        arrays.append(a.reshape(-1))
    return Decoded(codec, rate, np.concatenate(arrays) if arrays else np.zeros(0, np.float32))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    r, h = words(reference), words(hypothesis)
    d = np.zeros((len(r) + 1, len(h) + 1), dtype=int)
    d[:, 0] = range(len(r) + 1)
    d[0, :] = range(len(h) + 1)
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(r), len(h)] / max(1, len(r))


def transcribe(samples: np.ndarray, rate: int) -> str:
    from pocketsphinx import Decoder

    pcm16k = av_resample(samples, rate, 16000)
    dec = Decoder(samprate=16000, loglevel="FATAL")
    dec.start_utt()
    dec.process_raw((np.clip(pcm16k, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp else ""


def av_resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    from av.audio.resampler import AudioResampler

    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = rate
    rs = AudioResampler(format="flt", layout="mono", rate=target)
    out = rs.resample(frame) + rs.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out])
