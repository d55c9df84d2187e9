"""HiFT's Snake activation and row mask as one Triton kernel (chatterbox_fast.s3gen.snake_kernel).

The kernel is the one the GPU runs, executed by Triton's interpreter on the CPU in float32
(``TRITON_INTERPRET=1``, set before the kernel is defined): against upstream's ``Snake`` followed
by the mask, and inside the restated HiFT call against the same call on PyTorch's ops.
"""

from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is defined (first import of snake_kernel)
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from turbo_helpers import load_cpu_turbo  # noqa: E402


@pytest.fixture(scope="module")
def model(turbo_ckpt):
    return load_cpu_turbo(turbo_ckpt["dir"])


def test_the_kernel_is_upstreams_snake_then_the_row_mask():
    from chatterbox.models.s3gen.hifigan import Snake

    from voxgate_server.engines.chatterbox_fast.s3gen.snake_kernel import snake_masked, snake_masked_reference

    gen = torch.Generator().manual_seed(3)
    act = Snake(6)
    act.alpha.data = torch.rand(6, generator=gen) * 3 + 0.05
    wide = 4 * torch.randn(3, 6, 2 * 37, generator=gen)
    x = wide[:, :, ::2]  # strided over T: the wrapper makes it contiguous first
    lens = torch.tensor([37, 0, 20])  # a whole row, an empty one, a cut one
    with torch.inference_mode():
        want = act(x) * (torch.arange(37)[None, None, :] < lens[:, None, None])
        got = snake_masked(x, act.alpha, lens)
        ref = snake_masked_reference(x, act.alpha, lens)
    assert torch.equal(ref, want)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(got[1], torch.zeros(6, 37)) and torch.equal(got[2, :, 20:], torch.zeros(6, 17))
    assert (got[0] - x[0]).abs().max() > 0.1  # the activation really ran


def test_hift_with_the_fused_snake_gives_the_same_wave(model):
    from voxgate_server.engines.chatterbox_fast.s3gen.hift_graph import FusedSnake, hift_wave

    hift = model.s3gen.mel2wav
    gen = torch.Generator().manual_seed(11)
    frames, width = torch.tensor([12, 7]), 12
    mel = torch.randn(2, 80, width, generator=gen) - 5.0
    harmonics = hift.m_source.l_sin_gen.harmonic_num + 1
    phase = (torch.rand(2, harmonics, 1, generator=gen) * 2 - 1) * torch.pi
    phase[:, 0] = 0
    noise = torch.randn(2, harmonics, 480 * width, generator=gen)
    cache, cache_len = torch.zeros(2, 480 * width), torch.zeros(2, dtype=torch.long)
    snake = FusedSnake()
    with torch.inference_mode():
        want, want_src = hift_wave(hift, mel, frames, phase, noise, cache, cache_len)
        got, got_src = hift_wave(hift, mel, frames, phase, noise, cache, cache_len, snake)
    assert snake.broken is None  # the kernel ran, not the fallback
    for i, f in enumerate(frames.tolist()):
        w, g = want[i, :480 * f], got[i, :480 * f]
        assert (g - w).norm() / w.norm() < 1e-5
    assert torch.equal(got_src, want_src)  # the excitation does not go through Snake
