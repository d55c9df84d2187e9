"""The engine in-process (from_local): cancellation, length caps, the conditioning cache,
per-request state and the watermark. Loads the random checkpoint once for the module."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import numpy as np
import pytest

from turbo_helpers import encode


@pytest.fixture(scope="module")
def engine(turbo_ckpt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from voxgate_server.engines.chatterbox_turbo.engine import ChatterboxTurboEngine
    from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings
    from voxgate_server.settings import Settings

    voices = tmp_path_factory.mktemp("engine_voices")
    eng = ChatterboxTurboEngine(
        Settings(voices_dir=voices),
        ChatterboxSettings(checkpoint_dir=turbo_ckpt["dir"], device="cpu", voice_cache_size=2,
                           chunk_max_duration_s=0.12, max_duration_s=0.4, warmup=False),
    )
    eng.load()
    yield eng
    eng.close()
    del eng
    gc.collect()


def _request(**kw):  # noqa: ANN003, ANN202
    from voxgate_server.engines.base import SynthesisRequest

    base = dict(chunks=["Hello there."], voice="default", options={"seed": 3})
    base.update(kw)
    return SynthesisRequest(**base)


def test_loaded_through_from_local(engine) -> None:  # noqa: ANN001
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    assert isinstance(engine.model, ChatterboxTurboTTS)
    assert engine.max_concurrency() == 1
    assert [v.id for v in engine.voices()] == ["default"]


def test_cancel_stops_the_token_loop(engine) -> None:  # noqa: ANN001
    from voxgate_server.engines.base import Cancelled
    from voxgate_server.engines.chatterbox_turbo.conditioning import private_copy
    from voxgate_server.engines.chatterbox_turbo.tokens import SamplingParams

    cancel = threading.Event()
    steps = []

    def count(*_):  # noqa: ANN002, ANN202
        steps.append(1)
        if len(steps) == 3:
            cancel.set()

    hook = engine.model.t3.speech_head.register_forward_hook(count)
    try:
        with pytest.raises(Cancelled):
            engine.speech_tokens("A sentence that would run for a thousand tokens.",
                                 private_copy(engine.model.conds), SamplingParams(max_tokens=1000),
                                 engine.new_generator(1), cancel)
    finally:
        hook.remove()
    assert len(steps) == 3  # stopped at the next step, not after 1000


def test_token_cap_is_exact_and_audio_matches(engine) -> None:  # noqa: ANN001
    from voxgate_server.engines.chatterbox_turbo.conditioning import private_copy
    from voxgate_server.engines.chatterbox_turbo.tokens import SamplingParams

    conds = private_copy(engine.model.conds)
    tokens = engine.speech_tokens("Seven tokens.", conds, SamplingParams(max_tokens=7), engine.new_generator(0),
                                  threading.Event())
    assert tokens.shape == (7,) and int(tokens.max()) < 6561
    chunks = list(engine.synthesize(_request()))
    assert len(chunks) == 1 and chunks[0].segment_end and chunks[0].sample_rate == 24000
    assert chunks[0].samples.dtype == np.float32 and chunks[0].samples.size == (3 + 3) * 960


def test_conditioning_cache_is_bounded_and_follows_content(engine, reference_speech) -> None:  # noqa: ANN001
    samples, sr = reference_speech
    lib = engine.library.root
    lib.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["v1", "v2", "v3"]):
        (lib / f"{name}.wav").write_bytes(encode(np.roll(samples, i * 4000), sr, "wav"))
    engine.cache.clear()
    misses = engine.cache.misses
    first = engine.conditionals_for("v1")
    assert engine.conditionals_for("v1") is first  # cached
    engine.conditionals_for("v2")
    engine.conditionals_for("v3")
    assert len(engine.cache) == 2 and engine.cache.misses - misses == 3  # bound 2: v1 evicted
    # A replaced file is re-read: new content, new conditionals.
    engine.cache.clear()
    before = engine.conditionals_for("v2")
    (lib / "v2.wav").write_bytes(encode(0.5 * samples, sr, "wav"))
    after = engine.conditionals_for("v2")
    assert after is not before
    assert not np.allclose(after.t3.speaker_emb.numpy(), before.t3.speaker_emb.numpy())


def test_requests_never_write_shared_conditionals(engine, reference_speech) -> None:  # noqa: ANN001
    samples, sr = reference_speech
    (engine.library.root / "solo.wav").write_bytes(encode(samples, sr, "wav"))
    builtin = engine.model.conds
    list(engine.synthesize(_request(voice="solo")))
    list(engine.synthesize(_request(voice="default")))
    assert engine.model.conds is builtin
    assert builtin.t3.cond_prompt_speech_emb is None
    assert engine.conditionals_for("solo").t3.cond_prompt_speech_emb is None


def test_watermark_on_by_default(engine) -> None:  # noqa: ANN001
    from voxgate_server.engines.chatterbox_turbo.waveform import Vocoder

    assert engine.vocoder.watermarker is not None
    marked = next(engine.synthesize(_request(options={"seed": 9}))).samples
    plain_vocoder = Vocoder(engine.model.s3gen, None, 24000)
    saved, engine.vocoder = engine.vocoder, plain_vocoder
    try:
        plain = next(engine.synthesize(_request(options={"seed": 9}))).samples
    finally:
        engine.vocoder = saved
    # Same seed, same tokens: the only difference is the watermark, and it is small.
    # (Perth's detector is not asserted: on 0.24 s of random-weight noise it reports 1.0 either way.)
    assert marked.shape == plain.shape and not np.array_equal(marked, plain)
    assert np.abs(marked - plain).max() < 0.5 * np.abs(plain).max()
