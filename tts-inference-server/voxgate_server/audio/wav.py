"""WAV (RIFF, 16-bit PCM mono) written by hand, so the header can carry the true sizes.

A streamed WAV header leaves before the audio is made, so its sizes are ``0xFFFFFFFF`` ("until
end of file"), which FFmpeg and browsers accept but Python's ``wave`` and other readers that trust
the header take as 89,478 s. When the whole answer is one text chunk the server buffers it and
writes the real sizes; a longer input keeps streaming with the open-ended header.
"""

from __future__ import annotations

import struct

UNKNOWN = 0xFFFFFFFF


def wav_header(data_bytes: int | None, rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """The 44-byte canonical header; ``data_bytes=None`` means the length is not known yet."""
    block = channels * bits // 8
    riff = UNKNOWN if data_bytes is None else 36 + data_bytes
    data = UNKNOWN if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data))


class WavWriter:
    """Feed s16le PCM bytes; ``buffered`` holds them all and sizes the header at ``finish``."""

    def __init__(self, rate: int, *, buffered: bool) -> None:
        self.rate = rate
        self.buffered = buffered
        self._pending = bytearray()
        self._header_sent = False

    def write(self, pcm: bytes) -> bytes:
        if self.buffered:
            self._pending += pcm
            return b""
        if not self._header_sent:
            self._header_sent = True
            return wav_header(None, self.rate) + pcm
        return pcm

    def finish(self) -> bytes:
        if self.buffered:
            out = wav_header(len(self._pending), self.rate) + bytes(self._pending)
            self._pending = bytearray()
            return out
        if not self._header_sent:
            self._header_sent = True
            return wav_header(0, self.rate)
        return b""
