"""Shares the session checkpoint fixture of tests/chatterbox (built once by the project's tool)."""

from tests.chatterbox.conftest import turbo_ckpt  # noqa: F401
