"""Engine factories by id. Imports are lazy so an engine's heavy dependencies load only when used."""

from __future__ import annotations

from collections.abc import Callable

from voxgate_server.engines.base import Engine
from voxgate_server.settings import Settings


def _piper(settings: Settings) -> Engine:
    from voxgate_server.engines.piper import PiperEngine

    return PiperEngine(settings)


def _chatterbox_turbo(settings: Settings) -> Engine:
    # The fast path (batched CUDA-graph decoding, streaming vocoder) is on by default with CUDA
    # and falls back to the plain engine otherwise (VOXGATE_CHATTERBOX_FAST=auto|on|off).
    from voxgate_server.engines.chatterbox_fast.engine import FastChatterboxTurboEngine

    return FastChatterboxTurboEngine(settings)


def _chatterbox_multilingual(settings: Settings) -> Engine:
    from voxgate_server.engines.chatterbox_multilingual.engine import ChatterboxMultilingualEngine

    return ChatterboxMultilingualEngine(settings)


def _kokoro(settings: Settings) -> Engine:
    from voxgate_server.engines.kokoro.engine import KokoroEngine

    return KokoroEngine(settings)


FACTORIES: dict[str, Callable[[Settings], Engine]] = {
    "piper": _piper,
    "chatterbox-turbo": _chatterbox_turbo,
    "kokoro": _kokoro,
    "chatterbox-multilingual": _chatterbox_multilingual,
}


def create_engine(engine_id: str, settings: Settings) -> Engine:
    try:
        factory = FACTORIES[engine_id]
    except KeyError:
        known = ", ".join(sorted(FACTORIES))
        raise ValueError(f"unknown engine {engine_id!r} in VOXGATE_ENGINES (known: {known})") from None
    return factory(settings)
