"""Incremental encoders for the six OpenAI formats, so audio leaves as soon as it is made.

PyAV (FFmpeg's libraries in the wheel) encodes mp3, Ogg Opus, AAC (ADTS), FLAC and WAV; ``pcm``
is OpenAI's raw 24 kHz 16-bit little-endian mono. WAV is written by ``wav.py``: with its true
sizes when the caller says the length will be known before the first byte (``whole``), otherwise
streamed with RIFF sizes of 0xFFFFFFFF, which decoders read as "until EOF".
"""

from __future__ import annotations

import io

import av
import numpy as np

from voxgate_server.audio.dsp import OUTPUT_RATE, to_int16
from voxgate_server.audio.wav import WavWriter

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# format -> (container, codec, bit rate)
_CODECS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", 64000),
    "opus": ("ogg", "libopus", 32000),
    "aac": ("adts", "aac", 64000),
    "flac": ("flac", "flac", None),
}


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)

    def drain(self) -> bytes:
        out, self.buf = bytes(self.buf), bytearray()
        return out


class StreamEncoder:
    """Feed float32 mono chunks at 24 kHz, get encoded bytes back after each one."""

    def __init__(self, fmt: str, rate: int = OUTPUT_RATE, *, whole: bool = False) -> None:
        self.format = fmt
        self.rate = rate
        self._pts = 0
        self._container = None
        self._wav = WavWriter(rate, buffered=whole) if fmt == "wav" else None
        if fmt in ("pcm", "wav"):
            return
        container, codec, bit_rate = _CODECS[fmt]
        self._sink = _Sink()
        # The Ogg muxer holds about a second of pages unless told to flush every 20 ms.
        options = {"page_duration": "20000"} if container == "ogg" else {}
        self._container = av.open(self._sink, mode="w", format=container, options=options)
        self._stream = self._container.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            self._stream.bit_rate = bit_rate

    def encode(self, samples: np.ndarray) -> bytes:
        pcm = to_int16(samples)
        if self._wav is not None:
            return self._wav.write(pcm.tobytes())
        if self._container is None:
            return pcm.tobytes()
        if pcm.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += pcm.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.drain()

    def finish(self) -> bytes:
        if self._wav is not None:
            return self._wav.finish()
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.drain()

    def close(self) -> None:
        """Release FFmpeg state of an abandoned stream (client gone)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort on an abandoned stream
                pass
            self._container = None
