"""What an uploaded reference clip is and how long it lasts, read with PyAV (a base dependency).

Voice upload used ``soundfile``, which only the ``chatterbox`` extra installs, so the README's own
``voxgate-server[piper]`` answered every upload with a 500. PyAV's FFmpeg is in every install.
The clip is decoded, not only its header read: an MP3's header duration is a bitrate estimate,
and a clip that cannot be decoded is refused here rather than when a voice is first used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av

# FFmpeg demuxer name -> the extension a clip is stored under.
CONTAINERS: dict[str, str] = {"wav": "wav", "mp3": "mp3", "flac": "flac"}


class NotAudio(Exception):
    """The bytes are not a clip FFmpeg can decode."""


class UnsupportedContainer(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class ClipInfo:
    extension: str
    duration_s: float
    sample_rate: int


def probe_clip(source: bytes | Path, *, max_seconds: float | None = None) -> ClipInfo:
    """Decode ``source`` (stopping once past ``max_seconds``) and measure it."""
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise NotAudio(str(exc)) from exc
    with container:
        name = container.format.name.split(",")[0]
        if name not in CONTAINERS:
            raise UnsupportedContainer(name)
        if not container.streams.audio:
            raise NotAudio("no audio stream")
        stream = container.streams.audio[0]
        samples = 0
        rate = 0
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate or rate
                samples += frame.samples
                if max_seconds is not None and rate and samples / rate > max_seconds:
                    break
        except (av.FFmpegError, ValueError) as exc:
            if samples == 0:
                raise NotAudio(str(exc)) from exc
    if rate <= 0 or samples <= 0:
        raise NotAudio("no audio samples")
    return ClipInfo(CONTAINERS[name], samples / rate, rate)


def header_duration(path: Path) -> float | None:
    """The duration a stored clip's header declares (cheap: listing voices decodes nothing)."""
    try:
        with av.open(str(path), mode="r") as container:
            if container.duration:
                return container.duration / av.time_base
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
    return None
