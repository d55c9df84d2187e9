"""Read the PCM out of a model server's WAV answer and write one WAV from many.

Parsed by hand, not with ``wave``: a streamed WAV has placeholder sizes in its header, so the
data chunk is taken to run to the end of the file."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PCMFormat:
    channels: int
    sample_rate: int
    bits: int

    @property
    def bytes_per_second(self) -> int:
        return self.channels * self.sample_rate * self.bits // 8


class WavError(ValueError):
    pass


def split_wav(data: bytes) -> tuple[PCMFormat, bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body:body + 16])
            if tag not in (1, 0xFFFE):
                raise WavError(f"WAV format tag {tag} is not PCM")
            fmt = PCMFormat(channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise WavError("WAV data before its fmt chunk")
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            return fmt, data[body:end]
        pos = body + size + (size & 1)
    raise WavError("WAV without a data chunk")


def wav_header(fmt: PCMFormat, data_bytes: int) -> bytes:
    block = fmt.channels * fmt.bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, fmt.channels, fmt.sample_rate, fmt.sample_rate * block, block, fmt.bits)
            + b"data" + struct.pack("<I", data_bytes))


def join_wavs(parts: list[Path], out: Path) -> tuple[int, float]:
    """Concatenate the PCM of WAV files (same format) into ``out``; (bytes, seconds)."""
    fmt0: PCMFormat | None = None
    total = 0
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(b"\0" * 44)
        for p in parts:
            fmt, pcm = split_wav(p.read_bytes())
            if fmt0 is None:
                fmt0 = fmt
            elif fmt != fmt0:
                raise WavError(f"chunk {p.name} is {fmt}, the first was {fmt0}")
            f.write(pcm)
            total += len(pcm)
        if fmt0 is None:
            raise WavError("no chunks")
        f.seek(0)
        f.write(wav_header(fmt0, total))
    tmp.replace(out)
    return total + 44, total / fmt0.bytes_per_second
