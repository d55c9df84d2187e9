"""The CUDA checkpoint parking on a host without an NVIDIA driver (CI): it says why it cannot
park, the helper answers errors as JSON instead of dying, and the server would fall back (the
manager stops such a model). The working path is measured on the GPU by bench/park/park_bench.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from voxgate_server.engines.gpu import cuda_checkpoint
from voxgate_server.engines.gpu.parking import GpuParking


pytestmark = pytest.mark.skipif(cuda_checkpoint.has_libcuda(), reason="this host has a CUDA driver: the GPU bench covers it")


def test_probe_says_why_it_cannot_park():
    ok, why = cuda_checkpoint.probe()
    assert not ok and "libcuda" in why


def test_an_engine_on_the_cpu_cannot_park_and_says_so():
    class Engine(GpuParking):
        device = "cpu"

    support = Engine().park_support()
    assert not support.supported and support.mechanism is None and "cpu" in support.reason


def test_a_cuda_engine_without_a_driver_reports_the_probe_reason():
    class Engine(GpuParking):
        device = "cuda"

    support = Engine().park_support()
    assert not support.supported and "libcuda" in support.reason


def test_helper_answers_json_errors_without_a_driver():
    out = io.StringIO()
    cuda_checkpoint.serve(12345, stdin=io.StringIO("park 1000\nstate\n"), stdout=out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0]["ok"] is False and "libcuda" in lines[0]["error"]
    assert [x["ok"] for x in lines[1:]] == [False, False]


def test_helper_cli_probe_exit_code():
    r = subprocess.run([sys.executable, "-m", "voxgate_server.engines.gpu.cuda_checkpoint", "probe"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and json.loads(r.stdout)["supported"] is False
