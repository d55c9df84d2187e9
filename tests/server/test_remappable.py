"""The KV cache's remappable memory (engines/gpu/remappable.py) where CI runs: the ctypes
structures match cuda.h's layout (a wrong one would corrupt every cuMem call on a GPU host), a
CPU tensor stays a plain ``torch.zeros``, and without a driver the buffer refuses with a reason,
which makes ``remappable_zeros`` fall back. The release/re-map itself is measured on the GPU
(bench/memory/remap_probe.py, bench/park/park_bench.py)."""

from __future__ import annotations

import ctypes

import pytest
import torch

from voxgate_server.engines.gpu import cuda_checkpoint, remappable


def test_structures_have_the_driver_layout():
    prop, access = remappable._AllocationProp, remappable._AccessDesc
    # CUmemAllocationProp: type, requestedHandleTypes, location{type, id}, win32HandleMetaData, allocFlags
    assert ctypes.sizeof(prop) == 32
    assert [getattr(prop, f).offset for f in ("type", "requestedHandleTypes", "location",
                                               "win32HandleMetaData", "allocFlags")] == [0, 4, 8, 16, 24]
    assert ctypes.sizeof(remappable._AllocFlags) == 8
    # CUmemAccessDesc: location{type, id}, flags
    assert ctypes.sizeof(access) == 12 and access.flags.offset == 8


def test_a_cpu_tensor_stays_plain():
    t, buf = remappable.remappable_zeros((2, 3, 4), torch.bfloat16, "cpu")
    assert buf is None
    assert t.shape == (2, 3, 4) and t.dtype == torch.bfloat16 and t.device.type == "cpu"
    assert torch.equal(t, torch.zeros(2, 3, 4, dtype=torch.bfloat16))


@pytest.mark.skipif(cuda_checkpoint.has_libcuda(), reason="this host has a CUDA driver: the GPU bench covers it")
def test_without_a_driver_the_buffer_refuses_with_a_reason(monkeypatch):
    monkeypatch.setattr(remappable, "_driver", None)
    with pytest.raises(cuda_checkpoint.CheckpointError, match="libcuda"):
        remappable.RemappableBuffer(1 << 20)
