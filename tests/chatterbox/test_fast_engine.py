"""The chatterbox-turbo engine with its fast path forced on, on CPU (float32, no CUDA graphs):
streamed pieces per text chunk, upstream's clip length, concurrent requests, cancellation."""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

TOKENS_PER_CHUNK = 10  # chunk_max_duration_s=0.4 s at 25 tokens a second
SAMPLES_PER_TEXT_CHUNK = (TOKENS_PER_CHUNK + 3) * 960  # upstream appends 3 silence tokens


@pytest.fixture(scope="module")
def engine(turbo_ckpt: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from voxgate_server.engines.chatterbox_fast.engine import FastChatterboxTurboEngine, FastSettings
    from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings
    from voxgate_server.settings import Settings

    eng = FastChatterboxTurboEngine(
        Settings(voices_dir=tmp_path_factory.mktemp("fast_voices")),
        ChatterboxSettings(checkpoint_dir=turbo_ckpt["dir"], device="cpu", chunk_max_duration_s=0.4,
                           max_duration_s=2.0, warmup=False),
        FastSettings(fast="on", max_batch=2, max_len=640, first_chunk_tokens=4, max_chunk_tokens=8),
    )
    eng.load()
    yield eng
    eng.close()
    del eng
    gc.collect()


def _request(**kw):  # noqa: ANN003, ANN202
    from voxgate_server.engines.base import SynthesisRequest

    base = dict(chunks=["Hello there.", "This is the second sentence."], voice="default", options={"seed": 5})
    base.update(kw)
    return SynthesisRequest(**base)


def _spoken(chunks) -> list[np.ndarray]:  # noqa: ANN001
    """Concatenate the pieces of each text chunk (segment_end marks the end of one)."""
    out, cur = [], []
    for c in chunks:
        assert c.sample_rate == 24000 and c.samples.dtype == np.float32
        cur.append(c.samples)
        if c.segment_end:
            out.append(np.concatenate(cur))
            cur = []
    assert not cur
    return out


def test_fast_path_is_used_and_batches(engine) -> None:  # noqa: ANN001
    assert engine.fast is not None
    assert engine.max_concurrency() == 2


def test_streams_pieces_below_the_sentence_with_upstream_length(engine) -> None:  # noqa: ANN001
    chunks = list(engine.synthesize(_request()))
    spoken = _spoken(chunks)
    assert [len(s) for s in spoken] == [SAMPLES_PER_TEXT_CHUNK] * 2
    pieces_first = next(i for i, c in enumerate(chunks) if c.segment_end)
    assert pieces_first >= 2  # the first sentence left in several pieces
    assert all(np.isfinite(s).all() and np.abs(s).max() <= 1.0 for s in spoken)


def test_two_requests_at_once(engine) -> None:  # noqa: ANN001
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    texts = ["And request number two.", "Request number one."]

    def run(k: int) -> None:
        try:
            req = _request(chunks=[texts[k]], options={"seed": k})
            results[k] = _spoken(list(engine.synthesize(req)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors
    assert [len(results[k][0]) for k in (0, 1)] == [SAMPLES_PER_TEXT_CHUNK] * 2


def test_cancel_mid_stream(engine) -> None:  # noqa: ANN001
    from voxgate_server.engines.base import Cancelled

    req = _request()
    got = 0
    with pytest.raises(Cancelled):
        for _chunk in engine.synthesize(req):
            got += 1
            req.cancel.set()
    # stopped before the second sentence finished: a full request yields 2 x (pieces + end mark)
    assert 1 <= got < 6


def test_factory_builds_the_fast_engine_which_stays_off_on_cpu_by_default() -> None:
    from voxgate_server.engines import create_engine
    from voxgate_server.engines.chatterbox_fast.engine import FastChatterboxTurboEngine, FastSettings
    from voxgate_server.settings import Settings

    eng = create_engine("chatterbox-turbo", Settings(engines=["chatterbox-turbo"]))
    assert isinstance(eng, FastChatterboxTurboEngine)
    assert FastSettings().fast == "auto" and eng.fast is None


def test_the_fast_path_holds_a_sentence_and_gives_its_words(engine) -> None:  # noqa: ANN001
    from voxgate_server.engines.base import SynthesisRequest

    chunks = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."]
    plain = list(engine.synthesize(SynthesisRequest(chunks=chunks, voice="default", options={"seed": 4})))
    assert len(plain) > 2 and all(c.words is None for c in plain)  # streamed below the sentence
    timed_chunks = list(engine.synthesize(SynthesisRequest(
        chunks=chunks, voice="default", options={"seed": 4, "timestamps": "word"})))
    assert len(timed_chunks) == 2 and all(c.segment_end for c in timed_chunks)  # one whole clip a sentence
    assert [c.samples.size for c in timed_chunks] == [s.size for s in _spoken(plain)]  # the same clips
    for chunk, text in zip(timed_chunks, chunks):
        words = chunk.words
        assert [w for w, _, _ in words] == re.findall(r"[A-Za-z']+", text)
        assert all(s < e for _, s, e in words) and all(a[2] <= b[1] for a, b in zip(words, words[1:]))
        assert abs(words[-1][2] - chunk.samples.size / 24000) <= 0.3


def test_a_request_stops_the_warm_up_burst_instead_of_waiting_for_it(engine) -> None:  # noqa: ANN001
    """After load() the rest of the warm-up runs in the background (S3Gen's graphs, which CPU
    has none of, then on CUDA the burst; started by hand here, where the burst is off): the first
    request ends the burst at its next step and is served; a park or close waits it out."""
    from voxgate_server.engines.base import SynthesisRequest

    loaded = engine.background_warmup  # the one load() started: graphs only on CPU, done at once
    assert loaded is not None
    loaded.wait(30)
    assert not loaded.running and loaded.error is None and loaded.graphs_s is not None
    engine.background_warmup = engine.fast.background_warmup(False, 2, 400)  # minutes on this CPU
    assert engine.background_warmup.running
    chunks = list(engine.synthesize(SynthesisRequest(chunks=["Hello there."], voice="default",
                                                     options={"seed": 1})))
    assert sum(c.samples.size for c in chunks) == SAMPLES_PER_TEXT_CHUNK  # the request's own clip
    engine.background_warmup.wait(30)
    assert not engine.background_warmup.running
    assert engine.background_warmup.stopped_early and engine.background_warmup.error is None
    # a burst that a park or close meets is stopped and joined first
    engine.background_warmup = engine.fast.background_warmup(False, 2, 400)
    engine.end_warm_burst(wait=True)
    assert not engine.background_warmup.running and engine.background_warmup.stopped_early


def test_health_shows_the_background_warm_up_until_it_is_done(engine) -> None:  # noqa: ANN001
    """Ready means the engine serves; /health's ``warmup`` says whether its graph captures and
    burst still run after it (so slower), which a client or benchmark after the steady state waits out."""
    from fastapi import FastAPI

    from turbo_helpers import serve_in_thread
    from voxgate_server.metrics import ServerMetrics
    from voxgate_server.routes import ops
    from voxgate_server.runtime import EngineState, Runtime
    from voxgate_server.settings import Settings

    runtime = Runtime(Settings(engines=[]), ServerMetrics(), engines=[engine])  # the loaded engine, not reloaded
    slot = runtime.slots[engine.id]
    app = FastAPI()
    app.state.runtime = runtime
    app.include_router(ops.router)
    with serve_in_thread(app) as url:
        loading = httpx.get(f"{url}/health", timeout=10)
        assert loading.status_code == 503 and "warmup" not in loading.json()["engines"][engine.id]
        slot.state = EngineState.READY
        engine.background_warmup = engine.fast.background_warmup(True, 0, 0)  # as load() starts it on CPU
        engine.background_warmup.wait(30)
        done = httpx.get(f"{url}/health", timeout=10).json()["engines"][engine.id]["warmup"]
        assert done["state"] == "done" and done["graphs_s"] is not None and done["burst_s"] is None
        # a burst waiting for an idle moment: still warming up
        engine.background_warmup = engine.fast.background_warmup(False, 2, 400, idle=lambda: False)
        running = httpx.get(f"{url}/health", timeout=10)
        assert running.status_code == 200 and running.json()["status"] == "ok"
        assert running.json()["engines"][engine.id]["warmup"] == {
            "state": "running", "graphs_s": None, "burst_s": None, "burst_stopped_early": False}
        engine.end_warm_burst(wait=True)  # as a park does: given up
        given_up = httpx.get(f"{url}/health", timeout=10).json()["engines"][engine.id]["warmup"]
        assert given_up == {"state": "done", "graphs_s": None, "burst_s": None, "burst_stopped_early": True}


def test_work_handed_to_the_s3gen_worker_runs_on_its_thread_alone(engine) -> None:  # noqa: ANN001
    """What the background warm-up's graph captures go through: one exact call on the worker's
    thread, not pieces that real requests' pieces could join."""
    import threading

    worker = engine.fast.vocoder.worker
    assert worker.call(lambda: threading.current_thread().name).result(10) == "s3gen-worker-0"

    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        worker.call(fails).result(10)
    # the worker serves on: a request after it
    from voxgate_server.engines.base import SynthesisRequest

    chunks = list(engine.synthesize(SynthesisRequest(chunks=["Hi."], voice="default", options={"seed": 2})))
    assert sum(c.samples.size for c in chunks) == SAMPLES_PER_TEXT_CHUNK


def test_a_warm_up_burst_that_requests_came_before_waits_for_an_idle_moment(engine) -> None:  # noqa: ANN001
    """On CUDA the first full batch pays for what it first touches at batch size, so a burst that
    requests came before is run at the first idle moment instead of being dropped; a request
    that starts during it ends it, and a park gives up a burst still waiting."""
    import threading
    import time

    busy = threading.Event()
    busy.set()
    warmup = engine.fast.background_warmup(False, 2, 400, idle=lambda: not busy.is_set())
    warmup.stop()  # a request came before the burst began
    time.sleep(0.6)
    assert warmup.running and warmup.burst_s is None  # still waiting for an idle moment
    busy.clear()
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and warmup.cancel.is_set():
        time.sleep(0.05)
    time.sleep(0.3)
    warmup.stop()  # the burst is under way (400 tokens would take minutes here): a request ends it
    warmup.wait(60)
    assert not warmup.running and warmup.error is None
    assert warmup.burst_s is not None and warmup.stopped_early
    # a park while the burst still waits: given up, not run
    busy.set()
    waiting = engine.fast.background_warmup(False, 2, 400, idle=lambda: not busy.is_set())
    engine.background_warmup = waiting
    time.sleep(0.3)
    engine.end_warm_burst(wait=True)
    assert not waiting.running and waiting.burst_s is None and waiting.stopped_early
    assert engine._in_flight == 0


def test_the_fast_path_cuts_text_chunks_to_fit_its_kv_length(engine) -> None:  # noqa: ANN001
    """/v1/models and the chunker get the smaller of the engine's chunk length and what fits
    ``MAX_LEN`` (640 positions here: 101 characters), so no sentence is cut short by the cache."""
    from voxgate_server.engines.chatterbox_fast.engine import chunk_chars_within
    from voxgate_server.text import chunk_text

    caps = engine.capabilities()
    assert caps.max_chunk_chars == chunk_chars_within(640) == 101
    text = "This sentence runs on for quite a while, with clause after clause, so that it is longer than " \
           "one hundred and one characters, and then it goes on a little more."
    assert len(text) > 101
    assert all(len(c) <= 101 for c in chunk_text(text, caps.max_chunk_chars))
