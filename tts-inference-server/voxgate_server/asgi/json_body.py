"""Parse a JSON request body so that no body a client can send becomes a 500.

``json.loads`` has three traps for hostile or broken clients: nesting deeper than Python's
recursion limit raises ``RecursionError``; raw invalid UTF-8 is decoded with ``surrogatepass``
and, like an escaped ``"\\ud800"``, gives a string with a lone surrogate that every later
``.encode()`` (the engine, the sentence splitter, the JSON error reply) refuses. Both become a
400 here, naming the field, before any other code sees the value.
"""

from __future__ import annotations

import json
from typing import Any

from voxgate_server.errors import APIError

# No OpenAI body is deeper than 3 (body -> voice object -> id); 32 leaves room for extra_payload.
MAX_DEPTH = 32


def _surrogate_free(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any) -> None:
    """Walk the value without recursion: refuse deep nesting and strings that are not Unicode."""
    stack: list[tuple[Any, int, str | None]] = [(value, 0, None)]
    while stack:
        item, depth, param = stack.pop()
        if depth > MAX_DEPTH:
            raise APIError(400, f"The JSON body is nested deeper than {MAX_DEPTH} levels.", code="invalid_json")
        if isinstance(item, str):
            if not _surrogate_free(item):
                raise APIError(400, "The request contains a string that is not valid Unicode (a lone UTF-16 "
                                    "surrogate or invalid UTF-8).", param=param, code="invalid_unicode")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _surrogate_free(key):
                    raise APIError(400, "The request contains a key that is not valid Unicode.",
                                   param=param, code="invalid_unicode")
                stack.append((child, depth + 1, key if param is None else f"{param}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, param) for child in item)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a dict, or an ``invalid_json`` / ``invalid_unicode`` 400."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "We could not parse the JSON body of your request.", code="invalid_json") from None
    _check(data)
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    return data
