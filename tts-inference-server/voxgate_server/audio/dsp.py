"""Streaming signal steps between an engine and an encoder: resample, time-stretch, fades.

All state lives in the objects so a stream stays continuous across chunks (no clicks at joins).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import av
from av.audio.resampler import AudioResampler
from av.filter import Graph

OUTPUT_RATE = 24000


def _frame(samples: np.ndarray, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = rate
    return frame


def _frames_to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


class StreamResampler:
    """Stateful resampler (FFmpeg's swresample through PyAV) to one output rate."""

    def __init__(self, out_rate: int = OUTPUT_RATE) -> None:
        self.out_rate = out_rate
        self._rate: int | None = None
        self._resampler: AudioResampler | None = None

    def process(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.out_rate and self._resampler is None:
            return samples.astype(np.float32, copy=False)
        if self._resampler is None or self._rate != rate:
            self._resampler = AudioResampler(format="flt", layout="mono", rate=self.out_rate)
            self._rate = rate
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        return _frames_to_array(self._resampler.resample(_frame(samples, rate)))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return _frames_to_array(self._resampler.resample(None))


def _atempo_chain(speed: float) -> list[float]:
    """atempo takes 0.5..100 per stage; chain stages for 0.25..0.5."""
    stages: list[float] = []
    while speed < 0.5:
        stages.append(0.5)
        speed /= 0.5
    stages.append(speed)
    return stages


class TimeStretcher:
    """Changes tempo without changing pitch (FFmpeg's atempo), for engines with no speed control."""

    def __init__(self, speed: float, rate: int = OUTPUT_RATE) -> None:
        self.speed = speed
        self.rate = rate
        self._pts = 0
        graph = Graph()
        src = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=f"1/{rate}")
        node = src
        for stage in _atempo_chain(speed):
            nxt = graph.add("atempo", f"{stage:.6f}")
            node.link_to(nxt)
            node = nxt
        sink = graph.add("abuffersink")
        node.link_to(sink)
        graph.configure()
        self._graph = graph

    def _drain(self) -> list[av.AudioFrame]:
        frames = []
        while True:
            try:
                frames.append(self._graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return frames

    def process(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        frame = _frame(samples, self.rate)
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.rate)
        self._pts += samples.size
        self._graph.push(frame)
        return _frames_to_array(self._drain())

    def flush(self) -> np.ndarray:
        self._graph.push(None)
        return _frames_to_array(self._drain())


def fade_edges(samples: np.ndarray, rate: int, fade_ms: float, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Raised-cosine fades so a join between two chunks never starts or stops mid-wave."""
    n = min(int(rate * fade_ms / 1000), samples.size // 2)
    if n <= 0 or not (fade_in or fade_out):
        return samples
    out = samples.astype(np.float32, copy=True)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(np.float32)
    if fade_in:
        out[:n] *= ramp
    if fade_out:
        out[-n:] *= ramp[::-1]
    return out


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
