"""Helpers shared by every test directory (importable because pytest.ini puts tests/ on sys.path).

Not in tests/conftest.py: the three conftest.py files (tests/, tests/manager/, tests/chatterbox/)
all import as the module name ``conftest``, so ``from conftest import ...`` gets whichever pytest
loaded last."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
