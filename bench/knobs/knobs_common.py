"""What the knobs bench's sections share: one JSON row per figure, and a profile's top kernels."""

from __future__ import annotations

import json
from typing import Any


def emit(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """A figure as soon as it is measured (stdout: a section that fails later keeps what it
    printed), and into ``rows`` for ``--json``."""
    print(json.dumps(row), flush=True)
    rows.append(row)


def kernel_top(prof: Any, n: int) -> tuple[float, int, list[dict[str, Any]]]:
    """(kernel ms, kernels, the ``n`` kernel names with the most GPU time) of a profile."""
    by: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type.name == "CUDA":
            by.setdefault(e.name[:90], []).append(e.device_time)
    total = sum(sum(v) for v in by.values())
    top = sorted(by.items(), key=lambda kv: -sum(kv[1]))[:n]
    return total / 1000, sum(len(v) for v in by.values()), [{"name": k, "n": len(v), "us": round(sum(v), 1)}
                                                            for k, v in top]
