"""The checkpoint loader skips upstream's random weight init and still loads every weight.

``load_model`` builds upstream's classes under ``transformers``' ``no_init_weights`` (the
random init was half of ``from_local`` on the CPU). That is only sound because upstream loads
each module strictly, so the test holds the loaded model against the checkpoint's own files:
every parameter and persistent buffer equal to the file's tensor, nothing left out.
"""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from voxgate_server.engines.chatterbox_turbo import checkpoint
from voxgate_server.engines.chatterbox_turbo.checkpoint import load_model, skipped_random_init
from voxgate_server.engines.chatterbox_turbo.settings import ChatterboxSettings


def test_init_is_skipped_only_for_strict_loaders_and_restored_after() -> None:
    original = torch.nn.init.kaiming_uniform_
    with skipped_random_init("ChatterboxTurboTTS") as skipped:
        assert skipped
        assert torch.nn.init.kaiming_uniform_ is not original
        layer = torch.nn.Linear(4, 4)
        torch.nn.init.normal_(layer.weight)  # a no-op inside
    assert torch.nn.init.kaiming_uniform_ is original
    with skipped_random_init("ChatterboxTTS") as skipped:  # loads S3Gen with strict=False
        assert not skipped
        assert torch.nn.init.kaiming_uniform_ is original
    torch.manual_seed(0)
    a = torch.nn.Linear(64, 64).weight.detach().clone()
    torch.manual_seed(0)
    b = torch.nn.Linear(64, 64).weight.detach().clone()
    assert torch.equal(a, b) and a.abs().sum() > 0  # init works again afterwards


def test_every_weight_comes_from_the_files(turbo_ckpt: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voxgate.chatterbox")
    model = load_model(ChatterboxSettings(checkpoint_dir=turbo_ckpt["dir"], device="cpu"), "cpu")
    assert any("random init skipped" in r.getMessage() for r in caplog.records)
    assert any("chatterbox imported in" in r.getMessage() for r in caplog.records)
    ckpt = turbo_ckpt["dir"]
    files = {"ve": "ve.safetensors", "t3": "t3_turbo_v1.safetensors", "s3gen": "s3gen_meanflow.safetensors"}
    checked = 0
    for part, name in files.items():
        on_disk = load_file(ckpt / name)
        state = getattr(model, part).state_dict()
        for key, tensor in state.items():
            if part == "t3" and key.startswith("tfmr.wte."):
                continue  # upstream deletes T3's unused token embedding after loading
            assert key in on_disk, f"{part}.{key} is not in {name}: it would keep uninitialised memory"
            expected = on_disk[key].to(tensor.dtype)
            assert torch.equal(tensor, expected), f"{part}.{key} differs from {name}"
            checked += 1
        for pname, param in getattr(model, part).named_parameters():
            assert torch.isfinite(param).all(), f"{part}.{pname} is not finite"
    assert checked > 2000
    assert checkpoint._NO_INIT_LOCK.acquire(blocking=False)  # released after the load
    checkpoint._NO_INIT_LOCK.release()
