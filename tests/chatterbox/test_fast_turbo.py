"""The fast Turbo path (voxgate_server.engines.chatterbox_fast) against upstream, on CPU.

Runs the real chatterbox-tts modules on the project's random-weight checkpoint (float32, no
CUDA graphs: the same step function the GPU captures). The model must be unchanged: with
greedy sampling the batched static-cache decoder must produce upstream ``T3.inference_turbo``'s
tokens exactly, alone and with other requests joining and leaving the batch.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from voxgate_server.engines.chatterbox_fast import (  # noqa: E402
    BatchedT3Decoder,
    DecodeCancelled,
    SamplingParams,
    StreamingVocoder,
)
from voxgate_server.engines.chatterbox_fast.t3.sampling import SamplingState, processed_scores  # noqa: E402
from turbo_helpers import load_cpu_turbo, text_ids, upstream_greedy  # noqa: E402

TEXTS = [
    "Good morning, and welcome to the weekly update.",
    "Please remember that the office is closed on Monday.",
    "Could you read the last paragraph aloud, slowly?",
]
GREEDY = SamplingParams(temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2)


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


ids = text_ids


@pytest.fixture(scope="module", params=[1, 3], ids=["ahead1", "ahead3"])
def decoder(model, request):
    # ahead=3: steps are queued before the previous ones' tokens are read (the GPU default is 2);
    # retired requests must ignore the steps launched for them after they stopped
    dec = BatchedT3Decoder(model.t3, max_batch=4, max_len=640, device="cpu", ahead=request.param).start()
    yield dec
    dec.close()


@pytest.fixture(scope="module")
def reference(model):
    caps = [14, 8, 11]  # different lengths: requests leave the batch at different steps
    return {t: upstream_greedy(model, t, cap) for t, cap in zip(TEXTS, caps)}


def test_greedy_tokens_equal_upstream_alone(model, decoder, reference):
    want = reference[TEXTS[0]]
    got = decoder.submit(model.conds.t3, ids(model, TEXTS[0]), GREEDY, max_new_tokens=len(want)).result(300)
    assert len(want) == 15
    assert got == want


def test_greedy_tokens_equal_upstream_batched_join_and_leave(model, decoder, reference):
    want = [reference[t] for t in TEXTS]
    first = decoder.submit(model.conds.t3, ids(model, TEXTS[0]), GREEDY, max_new_tokens=len(want[0]))
    second = decoder.submit(model.conds.t3, ids(model, TEXTS[1]), GREEDY, max_new_tokens=len(want[1]))
    # the third joins while the others are mid-generation
    it = iter(first)
    seen = 0
    while seen < 4:
        seen += len(next(it))
    third = decoder.submit(model.conds.t3, ids(model, TEXTS[2]), GREEDY, max_new_tokens=len(want[2]))
    got = [first.result(300), second.result(300), third.result(300)]
    assert got == want
    assert decoder.step_rows > decoder.steps  # some steps really ran several requests at once


def test_requests_admitted_together_share_one_prefill_and_match_upstream(model):
    from voxgate_server.engines.chatterbox_fast.t3.decoder import TokenStream, _Job

    texts = ["Hello.", TEXTS[0], "Please remember that the office is closed on Monday and on Tuesday too."]
    want = [upstream_greedy(model, t, cap) for t, cap in zip(texts, (6, 9, 4))]
    dec = BatchedT3Decoder(model.t3, max_batch=4, max_len=640, device="cpu")
    streams, lengths = [], []
    for text, w in zip(texts, want):  # queued before the scheduler runs: its first admission takes all
        embeds = dec.prompt_embeds(model.conds.t3, ids(model, text))
        lengths.append(embeds.shape[0])
        stream = TokenStream(len(w), None)
        dec._pending.put(_Job(embeds, GREEDY, stream))
        streams.append(stream)
    prefills: list[int] = []
    prefill = dec.model.prefill
    dec.model.prefill = lambda slots, embeds: prefills.append(len(slots)) or prefill(slots, embeds)
    dec.trace = []
    dec.start()
    try:
        got = [s.result(300) for s in streams]
    finally:
        dec.close()
    assert len(set(lengths)) == 3  # prompts of three lengths: the shorter ones are padded
    assert prefills == [3]
    assert got == want
    # the bench's timeline: the prefill, then one record per step launched, in launch order
    assert [(kind, rows) for _, kind, rows in dec.trace[:2]] == [("prefill", 3), ("step", 3)]
    assert sum(kind == "step" for _, kind, _ in dec.trace) == dec.steps
    assert [t for t, _, _ in dec.trace] == sorted(t for t, _, _ in dec.trace)


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(model, decoder):
    p = SamplingParams(seed=1234)
    text = ids(model, TEXTS[1])
    alone = decoder.submit(model.conds.t3, text, p, max_new_tokens=10).result(300)
    other = decoder.submit(model.conds.t3, ids(model, TEXTS[0]), SamplingParams(seed=7), max_new_tokens=10)
    together = decoder.submit(model.conds.t3, text, p, max_new_tokens=10).result(300)
    other.result(300)
    different = decoder.submit(model.conds.t3, text, SamplingParams(seed=99), max_new_tokens=10).result(300)
    assert alone == together
    assert alone != different
    assert all(0 <= t < 6563 for t in alone)


def test_cancel_stops_a_request(model, decoder):
    cancel = threading.Event()
    stream = decoder.submit(model.conds.t3, ids(model, TEXTS[2]), SamplingParams(), max_new_tokens=200,
                            cancel=cancel)
    got = 0
    with pytest.raises(DecodeCancelled):
        for batch in stream:
            got += len(batch)
            if got >= 3:
                cancel.set()
    assert 3 <= len(stream.tokens) < 200


def test_processors_match_hugging_face_chain():
    """The batched processors against Hugging Face's own, chained in upstream's order by the
    upstream-path engine (one statement of that order for both paths)."""
    from voxgate_server.engines.chatterbox_turbo import tokens

    g = torch.Generator().manual_seed(0)
    V = 6563
    params = [SamplingParams(0.7, 50, 0.9, 1.3), SamplingParams(1.3, 1000, 0.5, 2.0), SamplingParams(0.8, 0, 1.0, 1.0)]
    st = SamplingState(len(params), V, torch.device("cpu"))
    logits = torch.randn(len(params), V, generator=g) * 3
    histories = [torch.randint(0, V, (n,), generator=g) for n in (5, 40, 1)]
    for i, p in enumerate(params):
        st.set_slot(i, p)
        st.history[i, histories[i]] = True
    ours = processed_scores(logits, st, torch.arange(len(params)))
    for i, p in enumerate(params):
        chain = tokens.logits_processors(tokens.SamplingParams(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                                                               repetition_penalty=p.repetition_penalty))
        assert len(chain) == sum([p.temperature != 1.0, p.top_k > 0, p.top_p < 1.0, p.repetition_penalty != 1.0])
        theirs = chain(histories[i][None], logits[i : i + 1].clone())[0]
        assert torch.equal(torch.isinf(ours[i]), torch.isinf(theirs))
        finite = torch.isfinite(theirs)
        assert finite.sum() >= 1
        torch.testing.assert_close(ours[i][finite], theirs[finite])


def test_streaming_vocoder_chunks_are_complete_and_continuous(model):
    n_tokens = 40
    tokens = torch.randint(0, 6561, (n_tokens,), generator=torch.Generator().manual_seed(3)).tolist()
    consumed = []

    def feed():
        for i in range(0, n_tokens, 5):
            consumed.append(i + 5)
            yield tokens[i : i + 5]

    voc = StreamingVocoder(model.s3gen, watermarker=model.watermarker, first_chunk=8, growth=2.0, max_chunk=16,
                           context=8, vocoder_context=6, watermark_first_chunk=False, lead_s=None)
    received_at = []  # tokens fed when each chunk came out
    chunks = []
    with torch.inference_mode():
        for chunk in voc.stream(feed(), dict(model.conds.gen)):
            received_at.append(consumed[-1])
            chunks.append(chunk)
    voc.close()
    audio = np.concatenate(chunks)
    assert len(chunks) >= 3
    # every chunk but the last left before T3 had finished: watermarked ones are not held back
    # until the next chunk is voiced
    assert max(received_at[:-1]) < n_tokens
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert len(audio) == (n_tokens + 3) * 960  # upstream: (tokens + 3 silence tokens) x 40 ms
    assert np.abs(audio).max() <= 1.0
    # no clicks at the joins: a step there is no larger than the clip's own largest steps
    steps = np.abs(np.diff(audio))
    joins = np.cumsum([len(c) for c in chunks])[:-1]
    assert steps[joins - 1].max() <= np.quantile(steps, 0.999) + 1e-6


def _stream_chunks(voc: StreamingVocoder, tokens: list[int], model, step: int = 4) -> list[np.ndarray]:
    def feed():
        for i in range(0, len(tokens), step):
            yield tokens[i : i + step]

    with torch.inference_mode():
        chunks = list(voc.stream(feed(), dict(model.conds.gen)))
    voc.close()
    return chunks


def test_paced_chunks_voice_what_waits_only_when_playback_needs_it(model):
    n_tokens = 40
    tokens = torch.randint(0, 6561, (n_tokens,), generator=torch.Generator().manual_seed(4)).tolist()
    kw = dict(first_chunk=8, growth=3.0, context=8, vocoder_context=6)
    # tokens arrive faster than playback: the first chunk's 0.28 s (8 tokens, less the held-back
    # crossfade) never runs dry, so the rest is voiced in one final call
    fast = _stream_chunks(StreamingVocoder(model.s3gen, max_chunk=64, lead_s=0.0, buffer_s=0.0, **kw), tokens, model)
    # growth schedule (8, then 24 waiting tokens) until 1 s of audio is out, then paced as above
    buffered = _stream_chunks(StreamingVocoder(model.s3gen, max_chunk=64, lead_s=0.0, buffer_s=1.0, **kw),
                              tokens, model)
    # playback always about to run dry (lead longer than any buffer): a chunk per 8 waiting tokens
    eager = _stream_chunks(StreamingVocoder(model.s3gen, max_chunk=64, lead_s=100.0, buffer_s=0.0, **kw),
                           tokens, model)
    # cap: never more than max_chunk waiting tokens in one piece
    capped = _stream_chunks(StreamingVocoder(model.s3gen, max_chunk=12, lead_s=0.0, buffer_s=0.0, **kw),
                            tokens, model)
    assert len(fast) == 2
    assert len(buffered) == 3
    assert len(eager) >= 4
    assert len(capped) >= 3
    for chunks in (fast, buffered, eager, capped):
        audio = np.concatenate(chunks)
        assert len(audio) == (n_tokens + 3) * 960
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        steps = np.abs(np.diff(audio))
        joins = np.cumsum([len(c) for c in chunks])[:-1]
        assert steps[joins - 1].max() <= np.quantile(steps, 0.999) + 1e-6


def test_under_load_the_first_chunk_waits_for_more_tokens(model):
    tokens = torch.randint(0, 6561, (40,), generator=torch.Generator().manual_seed(5)).tolist()
    kw = dict(first_chunk=8, growth=3.0, max_chunk=64, context=8, vocoder_context=6, lead_s=0.0, buffer_s=0.0,
              busy_first_chunk=24)
    calls: list[int] = []

    def busy(answer: bool):
        return lambda: calls.append(answer) or answer

    idle = _stream_chunks(StreamingVocoder(model.s3gen, busy=busy(False), **kw), tokens, model)
    loaded = _stream_chunks(StreamingVocoder(model.s3gen, busy=busy(True), **kw), tokens, model)
    assert calls.count(False) >= 2 and calls.count(True) >= 2  # asked while the first chunk was due
    # the first chunk holds 8 tokens (less the held-back crossfade), or 24 under load; the rest
    # follows in one final call either way, and the audio is the same length
    assert 8 * 960 - 960 <= len(idle[0]) < 9 * 960
    assert 24 * 960 - 960 <= len(loaded[0]) < 25 * 960
    assert len(idle) == len(loaded) == 2
    assert sum(map(len, idle)) == sum(map(len, loaded)) == (40 + 3) * 960


def test_speech_tokenizer_on_the_cpu_answers_as_before(model):
    """``tokenizer_on_cpu`` moves S3Gen's speech tokenizer off the GPU: same tokens, on the
    device S3Gen's callers expect, and ``S3Gen.device`` (its first parameter) unchanged."""
    from voxgate_server.engines.chatterbox_fast.pipeline import CpuSpeechTokenizer

    inner = model.s3gen.tokenizer
    wrapped = CpuSpeechTokenizer(inner, torch.device("cpu"))
    assert next(wrapped.parameters()).device == torch.device("cpu")
    assert next(wrapped.parameters()) is wrapped.device_anchor
    t = np.linspace(0, 3, 16000 * 3, dtype=np.float32)
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    with torch.inference_mode():
        want, want_len = inner([wave], max_len=40)
        got, got_len = wrapped([wave], max_len=40)
        got_t, _ = wrapped(torch.from_numpy(wave)[None], max_len=40)
    assert want.shape[1] == 40
    assert torch.equal(got, want) and torch.equal(got_len, want_len)
    assert torch.equal(got_t, want)


def test_s3gen_batches_respect_the_piece_and_frame_limits():
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import split_batches

    widths = [300, 100, 250, 120, 900, 110]
    out = split_batches(widths, lambda w: w, max_batch=2, max_frames=None)
    assert out == [[100, 110], [120, 250], [300, 900]]  # shortest first, 2 a call
    out = split_batches(widths, lambda w: w, max_batch=16, max_frames=600)
    # a call's pieces x its widest piece stays within 600 frames; a piece wider than that goes alone
    assert out == [[100, 110, 120], [250, 300], [900]]
    assert all(len(b) * max(b) <= 600 for b in out if len(b) > 1)
    # a call padded to a graph's shape (here: rows to a power of two) is counted as padded
    pow2 = lambda n: 1 << (n - 1).bit_length()  # noqa: E731
    assert split_batches(widths, lambda w: w, max_batch=16, max_frames=450) == [[100, 110, 120], [250], [300], [900]]
    out = split_batches(widths, lambda w: w, max_batch=16, max_frames=450, frames=lambda n, w: pow2(n) * w)
    assert out == [[100, 110], [120], [250], [300], [900]]  # three pieces pad to four: 480 frames
    assert sorted(w for b in out for w in b) == sorted(widths)


def test_every_call_the_worker_makes_meets_a_graph_warmed_ahead(model):
    """A shape first met while serving is captured then, at ~3 calls' cost in the middle of a
    burst: ``warm_graphs`` must cover every call that ``split_batches`` can make of this voice's
    pieces, within the frame budget (padding included), for any mix of piece lengths."""
    import random

    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import (S3GenWorker, _FlowJob, _HiftJob, _flow_tokens,
                                                                      _hift_frames, split_batches)

    from voxgate_server.engines.chatterbox_fast.engine import FastSettings

    ref = model.conds.gen
    longest, widest = 286, 539  # the vocoder's defaults
    budget = FastSettings.model_fields["s3gen_max_frames"].default  # the engine's
    worker = S3GenWorker(model.s3gen, max_frames=budget, graph_batch=16, max_batch=16)
    try:
        flow, hift = worker.flow_runner(), worker.hift_runner()
        flow.graph_batch = hift.graph_batch = 16  # what CUDA gets (the CPU never replays)
        flows, hifts = worker.graph_shapes(ref, longest, widest)  # what warm_graphs captures
        sizes = [r * w for r, w in flows]
        assert sizes == sorted(sizes, reverse=True) and len(set(flows)) == len(flows)
        for shapes, per_row, cap in ((flows, 2, budget), (hifts, 1, worker.hift_max_frames)):
            assert {r for r, _ in shapes} >= {1, 2, 4, 8} and {r for r, _ in shapes} <= {1, 2, 4, 8, 16}
            assert all(r * w * per_row <= cap for r, w in shapes if r > 1)
        rng = random.Random(0)
        mel = torch.zeros(80, 1)
        for _ in range(300):
            n = rng.randint(1, 16)
            jobs = [_FlowJob([0] * rng.randint(1, longest), ref) for _ in range(n)]
            calls = split_batches(jobs, _flow_tokens, 16, budget, flow.call_frames)
            assert sum(map(len, calls)) == n
            for call in calls:
                width = max(map(_flow_tokens, call))
                assert flow.graph_shape(len(call), width) in flows
                assert flow.call_frames(len(call), width) <= budget
            jobs = [_HiftJob(mel.expand(80, rng.randint(1, widest)), None) for _ in range(n)]
            for call in split_batches(jobs, _hift_frames, 16, worker.hift_max_frames, hift.call_frames):
                width = max(map(_hift_frames, call))
                assert hift.graph_shape(len(call), width) in hifts
                assert hift.call_frames(len(call), width) <= worker.hift_max_frames
    finally:
        worker.close()


def test_the_worker_gives_hift_half_the_frame_budget(model):
    """HiFT's batched call holds ~1.7x the flow's memory per frame: two pieces that share one
    flow call under the budget go to HiFT in two calls."""
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker, _FlowJob, _flow_tokens

    ref = model.conds.gen
    tokens = [[100 + i for i in range(20)], [300 + i for i in range(20)]]
    budget = 2 * 2 * _flow_tokens(_FlowJob(tokens[0], ref))  # both flow pieces fit in one call
    worker = S3GenWorker(model.s3gen, max_frames=budget, window_ms=500, graph_batch=0)
    worker.trace = []
    try:
        mels = [f.result(300) for f in [worker.flow(t, ref) for t in tokens]]
        assert worker.stats["flow_calls"] == 1 and worker.stats["flow_items"] == 2
        assert all(m.shape == (80, 40) for m in mels)
        # two mel pieces that fit the whole budget together, but not its half
        frames = budget // 4 + 1
        outs = [f.result(300) for f in [worker.hift(torch.zeros(80, frames), None) for _ in range(2)]]
        assert worker.stats["hift_calls"] == 2 and worker.stats["hift_items"] == 2
        assert all(len(samples) == 480 * frames for samples, _ in outs)
        # the bench's timeline: each call, eager (no graphs on the CPU), in order, with its times
        assert [c[:4] for c in worker.trace] == [("flow", 2, False, 0), ("hift", 1, False, 0), ("hift", 1, False, 0)]
        assert all(t0 <= t1 for *_, t0, t1 in worker.trace)
    finally:
        worker.close()


def test_sync_free_masks_equal_upstream_and_make_a_row_with_no_visible_key_visible():
    from chatterbox.models.s3gen.utils import mask as upstream

    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_syncfree import add_optional_chunk_mask

    xs = torch.zeros(2, 6, 4)
    masks = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)[:, None]
    for static in (0, 2):
        want = upstream.add_optional_chunk_mask(xs, masks.clone(), False, False, 0, static, -1)
        got = add_optional_chunk_mask(xs, masks.clone(), False, False, 0, static, -1)
        assert got.dtype == torch.bool and torch.equal(got, want)
    # a row hiding every key: upstream means to make it visible (its own branch for this raises
    # NameError in chatterbox-tts 0.1.7: ``logging`` is not imported there)
    empty = torch.zeros(1, 1, 6, dtype=torch.bool)
    assert add_optional_chunk_mask(xs[:1], empty, False, False, 0, 0, -1).all()


def test_sync_free_s3gen_gives_upstream_mel(model):
    """The flow with voxgate's sync-free masks makes exactly upstream's mel (same noise)."""
    from chatterbox.models.s3gen import decoder
    from chatterbox.models.s3gen.transformer import upsample_encoder
    from chatterbox.models.s3gen.utils import mask as upstream

    from voxgate_server.engines.chatterbox_fast.s3gen import s3gen_syncfree

    tokens = torch.arange(100, 124)[None]

    def mel_with(fn):
        saved = (decoder.add_optional_chunk_mask, upsample_encoder.add_optional_chunk_mask)
        decoder.add_optional_chunk_mask = upsample_encoder.add_optional_chunk_mask = fn
        try:
            torch.manual_seed(3)
            with torch.inference_mode():
                return model.s3gen.flow_inference(tokens, ref_dict=dict(model.conds.gen), n_cfm_timesteps=2,
                                                  finalize=True)
        finally:
            decoder.add_optional_chunk_mask, upsample_encoder.add_optional_chunk_mask = saved

    want = mel_with(upstream.add_optional_chunk_mask)
    got = mel_with(s3gen_syncfree.add_optional_chunk_mask)
    assert want.shape[-1] == 2 * 24
    assert torch.equal(got, want)


def test_the_warm_up_burst_sends_a_full_batch_through_every_stage(model):
    """The start-up burst must really run ``burst`` requests together through T3 and S3Gen (the
    first real burst is the one it stands in for), and their errors must reach the caller."""
    from voxgate_server.engines.chatterbox_fast import FastTurbo
    from voxgate_server.engines.chatterbox_fast.pipeline import WARM_BURST_TEXT

    ft = FastTurbo(model, max_batch=3, max_len=640, watermark=False, tf32=False, first_chunk=4, max_chunk=8).start()
    try:
        ft.decoder.trace, ft.vocoder.worker.trace = [], []
        ft.warmup(max_new_tokens=3, burst=3, burst_tokens=6)
        prefilled = [n for _, kind, n in ft.decoder.trace if kind == "prefill"]
        stepped = [n for _, kind, n in ft.decoder.trace if kind == "step"]
        assert sum(prefilled) == 1 + 3  # the single warm-up request, then the burst
        assert max(stepped) >= 2  # the burst's requests were decoded together
        voiced = sum(n for stage, n, *_ in ft.vocoder.worker.trace if stage == "hift")
        assert voiced >= 1 + 3  # and each one's audio came out of HiFT
        ft.decoder.trace = ft.vocoder.worker.trace = None
        real = ft.stream

        def failing(text, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            if text == WARM_BURST_TEXT:
                raise RuntimeError("burst request failed")
            return real(text, *a, **kw)

        ft.stream = failing
        with pytest.raises(RuntimeError, match="burst request failed"):  # raised on the caller's thread
            ft.warmup(max_new_tokens=3, burst=2, burst_tokens=6)
    finally:
        ft.close()


@pytest.mark.parametrize("helpers", [1, 0])
def test_a_requests_gpu_work_runs_on_the_helper_thread(model, monkeypatch, helpers):
    """A thread that runs a matmul on the GPU keeps a cuBLAS handle and workspace for good (~95
    MiB each on an H200), so a request's thread must leave its prompt and its chunks' watermark
    network to the engine's helper thread (and with 0 helpers, run them itself)."""
    from voxgate_server.engines.chatterbox_fast import FastTurbo
    from voxgate_server.engines.chatterbox_fast.s3gen import vocoder
    from voxgate_server.engines.chatterbox_turbo import waveform

    ft = FastTurbo(model, max_batch=2, max_len=640, watermark=True, tf32=False, first_chunk=4, max_chunk=8,
                   chunk_lead_s=None, gpu_helper_threads=helpers).start()
    ran: dict[str, set[str]] = {"prompt": set(), "watermark": set(), "resample": set()}
    prompt_embeds, network, resample_in = ft.decoder.prompt_embeds, waveform.watermark_network, waveform.watermark_input

    def record(key, fn):  # noqa: ANN001, ANN202
        def wrapped(*args):  # noqa: ANN002, ANN202
            ran[key].add(threading.current_thread().name)
            return fn(*args)
        return wrapped

    monkeypatch.setattr(ft.decoder, "prompt_embeds", record("prompt", prompt_embeds))
    monkeypatch.setattr(vocoder, "watermark_network", record("watermark", network))
    monkeypatch.setattr(vocoder, "watermark_input", record("resample", resample_in))
    params = SamplingParams(top_k=1)
    try:
        out: list[np.ndarray] = []
        t = threading.Thread(target=lambda: out.extend(ft.stream(TEXTS[0], params=params, max_new_tokens=14)),
                             name="request-thread")
        t.start()
        t.join(120)
        assert len(out) >= 2  # the first chunk, then at least one watermarked one
    finally:
        ft.close()
    helper = {"chatterbox-gpu-helper_0"} if helpers else {"request-thread"}
    assert ran["prompt"] == helper and ran["watermark"] == helper
    assert ran["resample"] == {"request-thread"}  # CPU work stays on the request's thread
