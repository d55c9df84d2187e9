"""The one-kernel sampler (chatterbox_fast.t3.sampling_kernel) against ``sampling.sample``.

The kernel is the one the GPU runs, executed by Triton's interpreter on the CPU
(``TRITON_INTERPRET=1``, set before it is defined). Each call gives every row its own
temperature, top-k, top-p, penalty, seed, step counter and history, and the two samplers work
on copies of one state: tokens, histories and step counters must come out equal, call after
call. Scores are also compared before the draw, so a wrong top-k or top-p cannot hide behind
a lucky argmax.
"""

from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is defined (first import)
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from voxgate_server.engines.chatterbox_fast.t3.sampling import (  # noqa: E402
    SamplingParams,
    SamplingState,
    processed_scores,
    sample,
)
from voxgate_server.engines.chatterbox_fast.t3.sampling_kernel import FusedSampler  # noqa: E402

V = 6563
PARAMS = [
    SamplingParams(temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2, seed=1),  # greedy
    SamplingParams(temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.2, seed=2),
    SamplingParams(temperature=1.3, top_k=1000, top_p=0.5, repetition_penalty=2.0, seed=3),
    SamplingParams(temperature=0.8, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=2**64 - 1),  # no top-k/p
    SamplingParams(temperature=1.3, top_k=1000, top_p=1.0, repetition_penalty=1.2, seed=2**63 + 12345),
    SamplingParams(temperature=0.7, top_k=V, top_p=0.9, repetition_penalty=2.0, seed=0),
    SamplingParams(temperature=1.0, top_k=1000, top_p=0.0, repetition_penalty=1.3, seed=4),  # only the best
]


def _states(max_batch: int, gen: torch.Generator) -> tuple[SamplingState, SamplingState]:
    st = SamplingState(max_batch, V, torch.device("cpu"))
    for i, p in enumerate(PARAMS):
        st.set_slot(i, p)
        st.step[i] = 37 * i  # requests at different points of their generation
        st.history[i, torch.randint(0, V, (5 + 40 * i,), generator=gen)] = True
    ref = SamplingState(max_batch, V, torch.device("cpu"))
    for name in ("temperature", "top_k", "top_p", "penalty", "seed", "step", "history"):
        getattr(ref, name).copy_(getattr(st, name))
    return st, ref


def _logits(gen: torch.Generator) -> torch.Tensor:
    logits = torch.randn(len(PARAMS), V, generator=gen) * 3
    logits[1, :100] = float("-inf")  # masked tokens
    logits[3, 6000:] = float("-inf")  # and with top-k/p off, every finite one is a candidate
    return logits


def test_tokens_history_and_steps_equal_sample():
    gen = torch.Generator().manual_seed(0)
    st, ref = _states(len(PARAMS) + 2, gen)  # rows past the batch stay untouched
    fused = FusedSampler(st)
    rows = torch.arange(len(PARAMS))
    for _ in range(6):
        logits = _logits(gen)
        want = sample(logits, ref, rows)
        got = fused(logits)
        assert got.dtype == torch.int64 and got.shape == (len(PARAMS),)
        assert got.tolist() == want.tolist()
        assert got[0] == logits[0].argmax()  # top_k == 1: greedy
        assert got[6] == logits[6].argmax()  # top_p == 0: the best token only
        assert torch.equal(st.history, ref.history)
        assert torch.equal(st.step, ref.step)
    assert st.step[: len(PARAMS)].tolist() == [37 * i + 6 for i in range(len(PARAMS))]


def test_processed_scores_equal_the_processor_chain():
    gen = torch.Generator().manual_seed(1)
    st, ref = _states(len(PARAMS), gen)
    fused = FusedSampler(st)
    rows = torch.arange(len(PARAMS))
    for _ in range(3):
        logits = _logits(gen)
        want = processed_scores(logits, ref, rows)
        sample(logits, ref, rows)
        got = torch.empty_like(logits)
        fused(logits, scores=got)
        kept = torch.isfinite(got)
        assert torch.equal(kept, torch.isfinite(want))
        assert torch.equal(got[~kept], want[~kept])  # -inf where the chain puts -inf
        torch.testing.assert_close(got[kept], want[kept], rtol=1e-6, atol=0)
        n = kept.sum(1).tolist()
        assert n[0] == 1 and 1 <= n[1] <= 50 and 1 <= n[2] < 1000 and n[3] == 6000 and n[4] == 1000
        assert 1 < n[5] < V - 100  # top-p alone
        assert n[6] == 1
