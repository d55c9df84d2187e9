"""S3Gen's flow and HiFT restated for CUDA graphs (``flow_graph.py``, ``hift_graph.py``) against
upstream's own calls.

On the CPU the runners take their eager path through the same ``flow_mel`` / ``hift_wave`` the
graphs capture, so these tests pin what the graphs replay: rows padded to a shared width,
several pieces in one call, must give upstream's output for each row alone when the random
draws are the same (flow: ``flow.inference(finalize=True)``'s mel; HiFT:
``HiFTGenerator.inference``'s samples and excitation, one row carrying excitation over).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turbo_helpers import load_cpu_turbo


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


def upstream_mel(model, piece: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's mel of ``piece`` after the voice prompt, and the noise [1, 80, 2(P+n)] it used."""
    ref = dict(model.conds.gen)
    n_prompt = ref["prompt_token"].shape[-1]
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 80, 2 * (n_prompt + len(piece)), generator=gen)
    saved = torch.randn_like
    torch.randn_like = lambda t, **kw: z.clone()  # the prompt part of upstream's noise
    try:
        with torch.inference_mode():
            mel, _ = model.s3gen.flow.inference(
                token=torch.tensor([piece]), token_len=torch.tensor([len(piece)]), finalize=True,
                noised_mels=z[:, :, 2 * n_prompt:], n_timesteps=2, meanflow=True, **ref)
    finally:
        torch.randn_like = saved
    return mel[0], z[0]


def test_padded_flow_rows_give_upstreams_mel(model):
    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner, flow_mel, speaker_projection

    pieces = [list(range(200, 224)), list(range(3000, 3040))]  # 24 and 40 tokens
    refs = [upstream_mel(model, p, seed=i) for i, p in enumerate(pieces)]
    ref = model.conds.gen
    prompt = ref["prompt_token"].reshape(-1)
    n_prompt = prompt.shape[0]
    width = n_prompt + 64  # a bucket wider than both rows
    tokens = torch.zeros(2, width, dtype=torch.long)
    cond = torch.zeros(2, 80, 2 * width)
    z = torch.randn(2, 80, 2 * width)  # the padding's noise differs from anything upstream drew
    for i, p in enumerate(pieces):
        tokens[i, :n_prompt] = prompt
        tokens[i, n_prompt:n_prompt + len(p)] = torch.tensor(p)
        cond[i, :, :2 * n_prompt] = ref["prompt_feat"][0].T
        z[i, :, :refs[i][1].shape[1]] = refs[i][1]
    tokens[0, n_prompt + 24:] = 4000  # junk in the padding: masked, so it must not matter
    lens = torch.tensor([n_prompt + len(p) for p in pieces])
    spks = speaker_projection(model.s3gen.flow, ref["embedding"]).expand(2, 80)
    with torch.inference_mode():
        out = flow_mel(model.s3gen.flow, tokens, lens, cond, spks, z, torch.linspace(0, 1, 3))
    for i, p in enumerate(pieces):
        want = refs[i][0]
        got = out[i, :, 2 * n_prompt:2 * (n_prompt + len(p))]
        assert got.shape == want.shape == (80, 2 * len(p))
        err = (got - want).norm() / want.norm()
        assert err < 1e-5, f"row {i}: relative error {err:.2e}"  # upstream padding: ~3e-3

    # the runner (eager here) hands back each piece's frames and draws fresh noise per call
    runner = FlowRunner(model.s3gen.flow)
    with torch.inference_mode():
        a = runner.run(pieces, ref)
        b = runner.run(pieces[:1], ref)
    assert [m.shape for m in a] == [(80, 48), (80, 80)] and b[0].shape == (80, 48)
    assert torch.isfinite(a[1]).all() and not torch.equal(a[0], b[0])


def upstream_source_draws(hift, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What HiFT's SineGen draws for one row, in its order: ``Uniform(-pi, pi)`` harmonic phases
    [1, H+1, 1] (the fundamental's set to 0), then Gaussian noise [1, H+1, samples]."""
    harmonics = hift.m_source.l_sin_gen.harmonic_num + 1
    lo, hi = torch.tensor(-np.pi), torch.tensor(np.pi)
    phase = lo + torch.rand(1, harmonics, 1) * (hi - lo)
    phase[:, 0, :] = 0
    return phase, torch.randn(1, harmonics, samples)


def test_padded_hift_rows_give_upstreams_wave_and_excitation(model):
    from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner, hift_wave

    hift = model.s3gen.mel2wav
    gen = torch.Generator().manual_seed(7)
    frames = [24, 41]
    mels = [torch.randn(80, f, generator=gen) - 5.0 for f in frames]
    caches = [None, 0.1 * torch.randn(12 * 480, generator=gen)]
    width = 64
    samples = 480 * width
    want, draws = [], []
    for i, (mel, cache) in enumerate(zip(mels, caches)):
        torch.manual_seed(100 + i)
        with torch.inference_mode():
            wav, src = hift.inference(mel[None], cache_source=torch.zeros(1, 1, 0) if cache is None else cache[None, None])
        want.append((wav[0], src[0, 0]))
        torch.manual_seed(100 + i)
        draws.append(upstream_source_draws(hift, 480 * frames[i]))

    mel_p = torch.full((2, 80, width), 3.0)  # junk past each row's frames: must not matter
    phase = torch.cat([d[0] for d in draws])
    noise = torch.randn(2, phase.shape[1], samples)
    cache_p = torch.zeros(2, samples)
    for i, (mel, (ph, nz)) in enumerate(zip(mels, draws)):
        mel_p[i, :, :frames[i]] = mel
        noise[i, :, :nz.shape[-1]] = nz[0]
    cache_p[1, :caches[1].shape[0]] = caches[1]
    with torch.inference_mode():
        wave, src = hift_wave(hift, mel_p, torch.tensor(frames), phase, noise, cache_p,
                              torch.tensor([0, caches[1].shape[0]]))
    for i, f in enumerate(frames):
        w, s = want[i]
        assert w.shape[-1] == 480 * f
        err = (wave[i, :480 * f] - w).norm() / w.norm()
        assert err < 1e-5, f"row {i}: wave relative error {err:.2e}"
        assert torch.allclose(src[i, :480 * f], s, atol=1e-6)

    # the runner (eager here) hands back rows of the widest piece's length, fresh draws per call
    runner = HiftRunner(hift)
    with torch.inference_mode():
        a, a_src = runner.run(mels, caches)
        b, _ = runner.run(mels[:1], caches[:1])
    assert a.shape == a_src.shape == (2, 480 * 41) and b.shape == (1, 480 * 24)
    assert torch.equal(a_src[1, :caches[1].shape[0]], caches[1])
    assert torch.isfinite(a).all() and not torch.equal(a[0, :480 * 24], b[0])


def test_a_capture_that_fails_leaves_the_runners_eager(model, caplog):
    """A GPU or driver that cannot capture must cost speed, not the engine: here capturing fails
    for real (no CUDA), once per runner, and every call still gets its audio."""
    import logging

    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner
    from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import HiftRunner

    flow, hift = FlowRunner(model.s3gen.flow), HiftRunner(model.s3gen.mel2wav)
    flow.graph_batch = hift.graph_batch = 2  # what CUDA would get
    piece = list(range(300, 316))
    with caplog.at_level(logging.WARNING, logger="voxgate.engine.chatterbox.graphs"), torch.inference_mode():
        mel = flow.run([piece], model.conds.gen)[0]
        wave, _ = hift.run([mel], [None])
        again = flow.run([piece], model.conds.gen)[0]  # no second capture attempt
    assert mel.shape == again.shape == (80, 32) and wave.shape == (1, 480 * 32)
    assert torch.isfinite(wave).all() and wave.abs().max() > 0
    assert flow.graphs.broken and hift.graphs.broken and len(flow.graphs) == len(hift.graphs) == 0
    assert sum("capture failed" in r.getMessage() for r in caplog.records) == 2


def test_a_graph_shaped_flow_call_voices_its_pieces_as_the_exact_sized_call(model):
    """Batched graphs pad the rows to a power of two (the spare rows: one masked token each) and
    the width to a bucket; what the runner fills in for that must not change any piece's mel."""
    from voxgate_server.engines.chatterbox_fast.s3gen.flow_graph import FlowRunner, _FlowInputs

    runner = FlowRunner(model.s3gen.flow)
    ref = model.conds.gen
    prompt = ref["prompt_token"].reshape(-1)
    n_prompt = int(prompt.shape[0])
    pieces = [list(range(100, 120)), list(range(300, 337)), list(range(500, 507))]
    longest = n_prompt + 37
    rows, width = runner.graph_shape(len(pieces), longest)
    assert rows == 4 and width > longest  # a spare row and extra width, as a replay would have
    cpu = torch.device("cpu")
    exact, padded = _FlowInputs.empty(3, longest, cpu), _FlowInputs.empty(rows, width, cpu)
    runner._fill(exact, pieces, ref, prompt)
    runner._fill(padded, pieces, ref, prompt)
    padded.z[:3, :, :exact.z.shape[-1]] = exact.z  # the same noise over every voiced frame
    with torch.inference_mode():
        want, got = runner._mel(exact), runner._mel(padded)
    a = int(ref["prompt_feat"].shape[1])
    for i, p in enumerate(pieces):
        w, g = want[i, :, a:a + 2 * len(p)], got[i, :, a:a + 2 * len(p)]
        assert (g - w).norm() / w.norm() < 1e-5, f"piece {i}"
    assert padded.lens[3] == 1 and torch.isfinite(got).all()
