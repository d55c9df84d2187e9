"""Reading a speech SSE stream as a test client does: every ``data:`` event, parsed."""

from __future__ import annotations

import json
from typing import Any

import httpx


def sse_events(url: str, body: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """POST ``body`` to ``url`` (a 200 is asserted) and return its SSE events in order."""
    events = []
    with httpx.stream("POST", url, timeout=timeout, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events
