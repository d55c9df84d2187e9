"""S3Gen's HiFT restated for CUDA graphs (``hift_graph.py``) against upstream's own call.

On the CPU the runner takes its eager path through the same ``hift_wave`` the graphs capture:
rows padded to a shared width, one carrying excitation over from a previous call, must give
``HiFTGenerator.inference``'s samples and excitation for the row alone, given the same draws.
"""

from __future__ import annotations

import pytest
import torch

from turbo_helpers import load_cpu_turbo


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


def test_padded_rows_give_upstreams_wave_and_excitation(model):
    from voxgate_server.engines.chatterbox_fast.hift_graph import HiftRunner, hift_wave, source_draws

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
        draws.append(source_draws(hift, 1, 480 * frames[i], torch.device("cpu")))  # upstream's draws, in its order

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
