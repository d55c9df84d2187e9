"""Make the manager (and the server) importable from the worktree without an install."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("manager", "tts-inference-server", "tests/manager"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)
