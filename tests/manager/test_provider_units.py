"""Providers' pure parts: text chunking, key scrubbing and lookup, backoff (no servers)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from voxgate_manager.providers.config import OpenAIProvider
from voxgate_manager.providers.elevenlabs import split_text
from voxgate_manager.providers.http import backoff_delay
from voxgate_manager.providers.keys import resolve_key, scrub


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz.!?\n", min_size=0, max_size=400), min_size=1, max_size=30),
       st.integers(min_value=100, max_value=500))
def test_split_text_keeps_every_character_in_order_within_the_limit(parts, limit):
    text = " ".join(parts)
    pieces = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    squeeze = lambda t: "".join(t.split())  # noqa: E731 - cuts drop only the whitespace at them
    assert squeeze("".join(pieces)) == squeeze(text)


def test_split_text_cuts_at_sentence_ends():
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    pieces = split_text(text, 500)
    assert all(p.endswith(".") for p in pieces) and " ".join(pieces) == text


def test_scrub_removes_our_key_and_key_shaped_strings():
    msg = "Incorrect API key provided: sk-te**********CRET. Also sk-abcdef123456 and our secret-key-value."
    out = scrub(msg, "secret-key-value")
    assert "secret-key-value" not in out and "sk-te**" not in out and "sk-abcdef" not in out
    assert out.startswith("Incorrect API key provided: [key]")


def test_resolve_key_env_then_file(monkeypatch, tmp_path):
    f = tmp_path / "k"
    f.write_text("from-file\n")
    monkeypatch.setenv("MY_KEY", "")
    monkeypatch.setenv("MY_KEY_FILE", str(f))
    assert resolve_key("MY_KEY", None) == "from-file"
    monkeypatch.setenv("MY_KEY", "from-env")
    assert resolve_key("MY_KEY", None) == "from-env"
    monkeypatch.delenv("MY_KEY")
    monkeypatch.delenv("MY_KEY_FILE")
    assert resolve_key("MY_KEY", str(f)) == "from-file" and resolve_key("MY_KEY", str(tmp_path / "none")) is None


def test_backoff_grows_with_jitter_is_capped_and_honours_retry_after():
    cfg = OpenAIProvider(type="openai", backoff_s=0.5, backoff_max_s=4.0)
    random.seed(1)
    d = [backoff_delay(a, cfg, None) for a in range(6)]
    assert 0.25 <= d[0] <= 0.5 and 0.5 <= d[1] <= 1.0 and 1.0 <= d[2] <= 2.0
    assert all(x is not None and x <= 4.0 for x in d)
    assert backoff_delay(0, cfg, 3.0) == 3.0  # at least the provider's Retry-After
    assert backoff_delay(0, cfg, 30.0) is None  # longer than backoff_max_s: not waited for
