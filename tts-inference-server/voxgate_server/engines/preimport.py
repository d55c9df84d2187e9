"""Start importing the GPU engines' libraries the moment ``voxgate-server`` starts.

A Chatterbox engine's load begins with ``torch`` and ``chatterbox`` (12.7 s of upstream's 20.5 s
to loaded weights on an H200 box, bench/results/launch-2026-12-03) and, left to the engine,
begins only after the web stack is imported and uvicorn is up. Imported on a thread from the
first line of ``main``, they overlap with that; the engine's own load then finds them in
``sys.modules`` (or waits on Python's per-module import lock for the rest). Failures are left
to the engine's load, which reports them on ``/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

log = logging.getLogger("voxgate.preimport")

# engine id -> the chatterbox module its loader imports (engines/chatterbox_turbo/checkpoint.py)
CHATTERBOX_MODULES: dict[str, str] = {"chatterbox-turbo": "tts_turbo", "chatterbox-multilingual": "mtl_tts"}


def _import(modules: list[str]) -> None:
    t0 = time.perf_counter()
    try:
        import torch  # noqa: F401

        from voxgate_server.engines.chatterbox_turbo.compat import import_chatterbox

        for module in modules:
            import_chatterbox(module)
    except Exception as exc:  # noqa: BLE001 - the engine's load raises it again, with context
        log.debug("pre-import stopped: %r", exc)
        return
    log.info("engine libraries imported ahead in %.2f s", time.perf_counter() - t0)


def start(engine_ids: Iterable[str]) -> threading.Thread | None:
    """Import what the configured engines will need on a daemon thread; None if nothing to do."""
    modules = [CHATTERBOX_MODULES[e] for e in engine_ids if e in CHATTERBOX_MODULES]
    if not modules:
        return None
    thread = threading.Thread(target=_import, args=(modules,), name="engine-preimport", daemon=True)
    thread.start()
    return thread
