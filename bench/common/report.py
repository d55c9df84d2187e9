"""How a CPU bench hands over its result: the JSON on stdout, and in ``--out`` when given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(result: Any, out: Path | None, indent: int = 2) -> None:
    text = json.dumps(result, indent=indent)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
