"""Both pyproject files load without setuptools deprecation warnings (the SPDX licence string)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_CHECK = """
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution
d = Distribution()
apply_configuration(d, "pyproject.toml")
print(d.metadata.license_expression)
"""


@pytest.mark.parametrize("package", ["tts-inference-server", "manager"])
def test_pyproject_has_no_setuptools_deprecation(package):
    done = subprocess.run([sys.executable, "-W", "error", "-c", _CHECK], cwd=ROOT / package,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "MIT"
