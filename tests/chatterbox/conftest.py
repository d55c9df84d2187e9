"""Fixtures of the chatterbox tests.

The random-weight checkpoint is built once per session by the project's own tool (bf16 files,
stop token suppressed so every generation is exactly as long as its cap). Set
VOXGATE_TEST_CKPT_CACHE to a folder to keep it between runs (it is rebuilt when the tool
changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from turbo_helpers import REPO, SERVER_SRC, encode, piper_speech

if str(SERVER_SRC) not in sys.path:
    sys.path.insert(0, str(SERVER_SRC))

TOOL = REPO / "tools" / "make_random_turbo_ckpt.py"
MTL_TOOL = REPO / "tools" / "make_random_mtl_ckpt.py"  # imports TOOL's helpers
REFERENCE_TEXT = (
    "This is a reference recording for the voice library. It is longer than five seconds, "
    "so Chatterbox Turbo accepts it as a voice to clone, and it is made by Piper every time."
)


def build_checkpoint(tool: Path, options: list[str], name: str,
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run a checkpoint tool once per session (or once per tool version with
    VOXGATE_TEST_CKPT_CACHE); {"dir": checkpoint folder, "hf_home": offline HF cache of it}."""
    key = hashlib.sha256(tool.read_bytes() + TOOL.read_bytes() + " ".join(options).encode()).hexdigest()[:12]
    cache = os.environ.get("VOXGATE_TEST_CKPT_CACHE")
    base = Path(cache) / f"{name}-{key}" if cache else tmp_path_factory.mktemp(name)
    ckpt, hf_home, done = base / "ckpt", base / "hf_home", base / ".complete"
    if not done.exists():
        result = subprocess.run(
            [sys.executable, str(tool), str(ckpt), *options, "--hf-cache-layout", str(hf_home)],
            capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert "conds.pt" in report["files"]
        done.write_text(result.stdout)
    return {"dir": ckpt, "hf_home": hf_home}


@pytest.fixture(scope="session")
def turbo_ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"dir": checkpoint folder, "hf_home": offline HF cache holding the same files}."""
    # A 6 s built-in voice (not 15 s) keeps T3's prompt and S3Gen's reference short: the code
    # paths are the same, each synthesis costs about half the CPU.
    options = ["--dtype", "bf16", "--eos-logit-bias", "-10000", "--ref-seconds", "6"]
    return build_checkpoint(TOOL, options, "turbo", tmp_path_factory)


@pytest.fixture(scope="session")
def mtl_ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The random Chatterbox Multilingual checkpoint (tools/make_random_mtl_ckpt.py), same scheme."""
    options = ["--dtype", "bf16", "--ref-seconds", "5.5"]
    return build_checkpoint(MTL_TOOL, options, "mtl", tmp_path_factory)


@pytest.fixture(scope="session")
def reference_speech() -> tuple[np.ndarray, int]:
    samples, sr = piper_speech(REFERENCE_TEXT)
    assert samples.size / sr > 6.5
    return samples[: int(6.5 * sr)], sr  # > 5 s as Turbo requires; shorter = cheaper conditioning


@pytest.fixture(scope="session")
def reference_wav(reference_speech: tuple[np.ndarray, int]) -> bytes:
    return encode(*reference_speech, "wav")
