"""The complete ``Allow`` header of a 405: every method any route on the path serves.

Starlette builds it from the first route that matches the path, so a path served by two
routers (``GET /v1/audio/voices`` in the catalog, ``POST`` in the voice library) says only
``GET``.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    methods: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router (no prefix here)
        if inner is not None:
            methods.update(allowed_methods(inner.routes, scope))
            continue
        match, _ = route.matches(scope)
        if match in (Match.PARTIAL, Match.FULL):
            methods.update(getattr(route, "methods", None) or ())
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))
