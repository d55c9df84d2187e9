"""Make the manager (and the server) importable from the worktree without an install."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("manager", "tts-inference-server"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)


import pytest  # noqa: E402

from manager_harness import ManagerProcess  # noqa: E402


@pytest.fixture
def mgr_factory(tmp_path):
    """Start managers with ``mgr_factory(models, **kw)``; each is stopped when the test ends."""
    started: list[ManagerProcess] = []

    def make(models, **kw) -> ManagerProcess:
        m = ManagerProcess(tmp_path, models, **kw)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()
