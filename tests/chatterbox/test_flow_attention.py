"""The flow estimator's attention in half precision (``flow_attention.py``) against upstream's.

With float32 Q, K and V the restated processor must give upstream's output exactly (the additive
mask turned into a boolean one, the same projections in the same order), on padded rows too; in
float16 and bfloat16 only the rounding of Q, K and V may move the mel. Switching back restores
upstream's processor.
"""

from __future__ import annotations

import pytest
import torch

from turbo_helpers import load_cpu_turbo


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


def _padded_inputs(model):
    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner, _FlowInputs

    runner = FlowRunner(model.s3gen.flow, graph_batch=0)
    ref = model.conds.gen
    prompt = ref["prompt_token"].reshape(-1)
    pieces = [list(range(100, 140)), list(range(2000, 2012))]  # the second row is padded by 28 tokens
    inputs = _FlowInputs.empty(2, int(prompt.shape[0]) + 40, torch.device("cpu"))
    torch.manual_seed(0)
    runner._fill(inputs, pieces, ref, prompt)
    return runner, inputs, int(ref["prompt_feat"].shape[1]), pieces


def _voiced(mel, a, pieces):
    return [mel[i, :, a:a + 2 * len(p)] for i, p in enumerate(pieces)]


def test_half_attention_in_float32_is_upstreams_attention(model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from voxgate_server.engines.chatterbox_fast.s3gen import flow_attention

    est = model.s3gen.flow.decoder.estimator
    runner, inputs, a, pieces = _padded_inputs(model)
    try:
        with torch.inference_mode():
            upstream = runner._mel(inputs)
            assert flow_attention.install(est, torch.float32) == 56  # 14 blocks x 4 transformers
            restated = runner._mel(inputs)
    finally:
        flow_attention.install(est, None)
    for ours, theirs in zip(_voiced(restated, a, pieces), _voiced(upstream, a, pieces)):
        assert torch.equal(ours, theirs)
    procs = {type(m.processor) for m in est.modules() if hasattr(m, "processor")}
    assert procs == {AttnProcessor2_0}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_attention_moves_the_mel_by_rounding_only(model, dtype):
    from voxgate_server.engines.chatterbox_fast.s3gen import flow_attention

    est = model.s3gen.flow.decoder.estimator
    runner, inputs, a, pieces = _padded_inputs(model)
    try:
        with torch.inference_mode():
            upstream = runner._mel(inputs)
            flow_attention.install(est, dtype)
            half = runner._mel(inputs)
            other = runner._mel(type(inputs)(inputs.tokens, inputs.lens, inputs.cond, inputs.spks,
                                             torch.randn_like(inputs.z)))
    finally:
        flow_attention.install(est, None)
    for ours, theirs, noise in zip(_voiced(half, a, pieces), _voiced(upstream, a, pieces),
                                   _voiced(other, a, pieces)):
        moved = float((ours - theirs).norm() / theirs.norm())
        # rounding Q, K, V to 8 / 11 significant bits; other noise moves the mel by ~100%
        assert 0 < moved < (2e-3 if dtype is torch.float16 else 1e-2), moved
        assert float((noise - theirs).norm() / theirs.norm()) > 0.3


def test_worker_attention_setting_is_checked():
    from voxgate_server.engines.chatterbox_fast.s3gen.s3gen_worker import S3GenWorker

    with pytest.raises(ValueError, match="fp16, bf16 or fp32"):
        S3GenWorker(torch.nn.Linear(1, 1), attention="int8")
