"""Perth's watermark must leave nothing alive behind it (CPU, the real resemble-perth network).

resemble-perth runs its network with gradients on. Called so, a watermark call's autograd graph
outlived the request thread that made it, beyond ``gc.collect()``: on a server that is memory
(VRAM on a GPU) lost with every clip. Both vocoders watermark through ``apply_watermark``.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from voxgate_server.engines.chatterbox_turbo.compat import ensure_pkg_resources  # noqa: E402
from voxgate_server.engines.chatterbox_turbo.waveform import apply_watermark  # noqa: E402

SR = 24000


def _graph_tensors() -> int:
    """Live tensors that belong to an autograd graph."""
    n = 0
    for obj in gc.get_objects():
        try:
            if type(obj) is torch.Tensor and obj.grad_fn is not None:
                n += 1
        except ReferenceError:  # a weak proxy whose target is gone
            continue
    return n


@pytest.fixture(scope="module")
def watermarker():  # noqa: ANN201
    ensure_pkg_resources()
    import perth

    return perth.PerthImplicitWatermarker()


def _on_threads(fn, n: int = 3) -> None:  # noqa: ANN001
    """Run ``fn`` on ``n`` short-lived threads one after another, as requests' threads do."""
    for _ in range(n):
        t = threading.Thread(target=fn)
        t.start()
        t.join()


def test_apply_watermark_leaves_no_autograd_graph_alive(watermarker) -> None:  # noqa: ANN001
    samples = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    gc.collect()
    before = _graph_tensors()
    out: list[np.ndarray] = []
    _on_threads(lambda: out.append(apply_watermark(watermarker, samples, SR)))
    gc.collect()
    assert _graph_tensors() == before
    assert all(o.dtype == np.float32 and o.shape == samples.shape for o in out)
    # the same samples as Perth's own call, which builds the graph
    np.testing.assert_array_equal(out[0], np.asarray(watermarker.apply_watermark(samples, sample_rate=SR),
                                                     dtype=np.float32))
    assert not np.array_equal(out[0], samples)  # and a watermark was applied
