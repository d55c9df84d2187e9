"""The allocator park mechanism (``engines/gpu/sleep_memory.py``) on the CPU test machine: which
mechanism is chosen and why, the environment that the server re-executes itself with, and a
clear refusal of a bad setting. Parking itself needs a GPU. bench/park/park_bench.py measures it on
the device (``VOXGATE_PARK_MECHANISM=allocator``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxgate_server.engines.gpu import cuda_checkpoint, sleep_memory
from voxgate_server.engines.gpu.parking import GpuParking

no_driver = pytest.mark.skipif(cuda_checkpoint.has_libcuda(), reason="this host has a CUDA driver: the GPU bench covers it")


def test_the_setting_defaults_to_auto_and_names_the_choices_when_wrong():
    assert sleep_memory.requested({}) == "auto"
    assert sleep_memory.requested({"VOXGATE_PARK_MECHANISM": " Allocator "}) == "allocator"
    with pytest.raises(ValueError, match="auto, cuda-checkpoint, allocator, stop"):
        sleep_memory.requested({"VOXGATE_PARK_MECHANISM": "freeze"})


def test_the_server_refuses_an_unknown_mechanism_at_start():
    r = subprocess.run([sys.executable, "-m", "voxgate_server.cli", "--port", "9"],
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                            "VOXGATE_PARK_MECHANISM": "freeze"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "VOXGATE_PARK_MECHANISM='freeze'" in r.stderr and "Traceback" not in r.stderr


def test_the_installed_library_ships_a_hook_for_both_cuda_majors():
    """The `chatterbox` install (scripts/install-chatterbox.sh, the gpu image) brings
    torch_memory_saver. Its wheel carries the preload hooks that the re-exec names."""
    for major in (12, 13):
        lib = sleep_memory.preload_library(major)
        assert lib is not None and lib.is_file() and f"cu{major}" in lib.name


def test_the_re_exec_environment_preloads_the_hook_and_turns_expandable_segments_off(tmp_path):
    lib = tmp_path / "torch_memory_saver_hook_mode_preload_cu13.abi3.so"
    runtime = tmp_path / "nvidia" / "cu13" / "lib"
    env = sleep_memory.process_env(
        {"LD_PRELOAD": "/old/torch_memory_saver_x.so:/usr/lib/libjemalloc.so", "LD_LIBRARY_PATH": "/opt/lib",
         "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True,garbage_collection_threshold:0.8", "HOME": "/h"},
        lib, runtime)
    assert env["LD_PRELOAD"] == f"{lib}:/usr/lib/libjemalloc.so"  # the stale hook is gone, the other kept
    assert env["LD_LIBRARY_PATH"] == f"{runtime}:/opt/lib"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "garbage_collection_threshold:0.8"
    assert env["TMS_INIT_ENABLE"] == "1" and env["TMS_INIT_ENABLE_CPU_BACKUP"] == "1"
    assert env["HOME"] == "/h"
    assert sleep_memory.active(env) and not sleep_memory.active({})
    only_expandable = sleep_memory.process_env({"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, lib, None)
    assert "PYTORCH_CUDA_ALLOC_CONF" not in only_expandable and "LD_LIBRARY_PATH" not in only_expandable


def test_the_cuda_major_is_read_from_torch_without_importing_it():
    import torch

    expected = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else None
    assert sleep_memory.torch_cuda_major() == expected


@no_driver
def test_auto_without_a_driver_stops_and_says_why_for_both_mechanisms():
    mechanism, why = sleep_memory.chosen({})
    assert mechanism == "stop"
    assert why.startswith("cuda-checkpoint: libcuda") and "allocator: " in why


@no_driver
def test_an_explicit_mechanism_that_cannot_run_says_why():
    assert sleep_memory.chosen({"VOXGATE_PARK_MECHANISM": "stop"}) == ("stop", "VOXGATE_PARK_MECHANISM=stop")
    mechanism, why = sleep_memory.chosen({"VOXGATE_PARK_MECHANISM": "allocator"})
    assert mechanism == "stop" and why == sleep_memory.unavailable_reason() and why
    mechanism, why = sleep_memory.chosen({"VOXGATE_PARK_MECHANISM": "cuda-checkpoint"})
    assert mechanism == "stop" and "libcuda" in why


@no_driver
def test_prepare_process_leaves_a_process_that_cannot_use_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("VOXGATE_PARK_MECHANISM", "allocator")
    sleep_memory.prepare_process([])  # returns: no exec without CUDA
    assert not sleep_memory.active()


def test_a_cuda_engine_told_not_to_park_reports_the_setting(monkeypatch):
    monkeypatch.setenv("VOXGATE_PARK_MECHANISM", "stop")

    class Engine(GpuParking):
        device = "cuda"

    support = Engine().park_support()
    assert not support.supported and support.reason == "VOXGATE_PARK_MECHANISM=stop"


def test_a_process_started_with_the_hook_parks_through_the_allocator(monkeypatch):
    monkeypatch.setenv(sleep_memory.MARKER, "1")
    monkeypatch.setenv("LD_PRELOAD", str(Path("/x/torch_memory_saver_hook_mode_preload_cu13.abi3.so")))

    class Engine(GpuParking):
        device = "cuda"

    engine = Engine()
    support = engine.park_support()
    assert support.as_dict() == {"supported": True, "mechanism": "allocator", "reason": None}
    engine.prepare_park()  # nothing to start ahead for the allocator: no helper process
    assert engine._checkpoint_helper is None
