"""The fused Triton decode step (chatterbox_fast.t3.fused_step) against the plain step and upstream.

The kernels are the ones the GPU runs, executed by Triton's interpreter on the CPU in float32
(``TRITON_INTERPRET=1``, set before the kernels are defined). The interpreter is slow (~10 s a
step for the 24-layer model), so these tests take few steps: one step compared value by value
with the plain step (logits and the KV cache it writes, with and without split keys), and a few
greedy tokens through the batched decoder compared with upstream's.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined (first FusedDecodeStep)
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from voxgate_server.engines.chatterbox_fast import BatchedT3Decoder, SamplingParams  # noqa: E402
from voxgate_server.engines.chatterbox_fast.t3.fused_step import FusedDecodeStep  # noqa: E402
from voxgate_server.engines.chatterbox_fast.t3.gpt2_static import StaticGPT2  # noqa: E402
from turbo_helpers import load_cpu_turbo, text_ids, upstream_greedy  # noqa: E402

GREEDY = SamplingParams(temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2)
TEXTS = ["Good morning, and welcome to the weekly update.", "Could you read the last paragraph aloud?"]


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


@pytest.mark.parametrize("splits,split_k", [(1, 1), (2, 4)], ids=["keys-whole-K-whole", "keys-split-K-split"])
def test_one_fused_step_equals_the_plain_step(model, splits, split_k):
    sg = StaticGPT2(model.t3, device=torch.device("cpu"), dtype=torch.float32, max_batch=4, max_len=256)
    gen = torch.Generator().manual_seed(1)
    lengths = [40, 75, 58]  # rows attend over different numbers of keys
    with torch.inference_mode():
        for slot, n in enumerate(lengths):
            sg.prefill([slot], [torch.randn(n, sg.dim, generator=gen) * 0.5])
        before = sg.kv_cache.clone()
        tokens = torch.tensor([5, 1200, 6000])
        pos = torch.tensor(lengths)
        want = sg.logits(sg.decode(tokens, pos, 128))
        cache_want = sg.kv_cache.clone()
        sg.kv_cache.copy_(before)
        step = FusedDecodeStep(sg)
        step.max_splits = splits
        assert step.splits(3) == splits
        step.configs = {name: dataclasses.replace(cfg, split_k=split_k) for name, cfg in step.configs.items()}
        got = step(tokens, pos)
    assert got.shape == want.shape == (3, sg.head_w.shape[0])
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    assert ((got - want).norm() / want.norm()).item() < 1e-5
    assert not step.linear_lock.any()  # the split path leaves its arrival counts at zero for the next call
    # the step wrote each row's key and value at its position, and nothing else
    assert not torch.equal(sg.kv_cache, before)
    assert torch.allclose(sg.kv_cache, cache_want, rtol=1e-5, atol=1e-5)


def test_fused_decoder_greedy_tokens_equal_upstream(model):
    want = [upstream_greedy(model, TEXTS[0], 3), upstream_greedy(model, TEXTS[1], 2)]
    dec = BatchedT3Decoder(model.t3, max_batch=2, max_len=512, device="cpu", fused=True).start()
    try:
        assert dec.fused
        streams = [dec.submit(model.conds.t3, text_ids(model, t), GREEDY, max_new_tokens=len(w))
                   for t, w in zip(TEXTS, want)]
        got = [s.result(900) for s in streams]
    finally:
        dec.close()
    assert [len(w) for w in want] == [4, 3]
    assert got == want  # the second request leaves the batch a step before the first
