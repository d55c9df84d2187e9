"""VOXGATE_CHATTERBOX_PROFILE sizes batch, KV length and S3Gen batches together; a setting given
on its own wins over its profile's value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voxgate_server.engines.chatterbox_fast.engine import PROFILES, PROMPT_POSITIONS, FastSettings, chunk_chars_within


def test_balanced_is_the_default_and_the_shipped_values(monkeypatch):
    monkeypatch.delenv("VOXGATE_CHATTERBOX_PROFILE", raising=False)
    s = FastSettings()
    assert s.profile == "balanced" and (s.max_batch, s.max_len, s.s3gen_batch, s.s3gen_graph_batch) == (16, 1024, 16, 16)
    assert s.s3gen_max_frames == 4000  # with the growing KV cache, what keeps 16 at once under 5.5 GiB
    assert s.kv_grow and s.cublas_workspace_kib == 0


def test_small_sets_smaller_cublas_workspaces_and_a_hand_set_value_wins(monkeypatch):
    monkeypatch.setenv("VOXGATE_CHATTERBOX_PROFILE", "small")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setenv("CUBLASLT_WORKSPACE_SIZE", "1024")
    s = FastSettings()
    assert s.cublas_workspace_kib == 4096
    s.apply_process_settings()
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:1"
    assert os.environ["CUBLASLT_WORKSPACE_SIZE"] == "1024"  # set by hand: kept
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")


def test_throughput_keeps_the_long_kv_and_wide_s3gen_calls(monkeypatch):
    monkeypatch.setenv("VOXGATE_CHATTERBOX_PROFILE", "throughput")
    s = FastSettings()
    assert (s.max_batch, s.max_len, s.s3gen_batch, s.s3gen_max_frames) == (32, 1536, 32, 6000)


def test_text_chunks_fit_the_kv_length():
    """A chunk of N characters must leave room for its speech in MAX_LEN positions at a slow
    speaking rate (11 characters a second, 25 speech tokens a second, a text token per 3)."""
    for max_len in (768, 1024, 1536, 4096):
        chars = chunk_chars_within(max_len)
        needed = PROMPT_POSITIONS + chars / 3 + chars / 11 * 25
        assert needed <= max_len < PROMPT_POSITIONS + (chars + 2) * (1 / 3 + 25 / 11)
    assert chunk_chars_within(1536) > 300  # the engine's own 300 stays the limit there


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_sets_its_values(monkeypatch, profile):
    monkeypatch.setenv("VOXGATE_CHATTERBOX_PROFILE", profile)
    s = FastSettings()
    for name, value in PROFILES[profile].items():
        assert getattr(s, name) == value
    assert s.turbo_kwargs()["max_batch"] == s.max_batch


def test_an_explicit_setting_wins_over_the_profile(monkeypatch):
    monkeypatch.setenv("VOXGATE_CHATTERBOX_PROFILE", "small")
    monkeypatch.setenv("VOXGATE_CHATTERBOX_MAX_LEN", "1024")
    s = FastSettings()
    assert (s.max_batch, s.max_len) == (1, 1024)


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("VOXGATE_CHATTERBOX_PROFILE", "huge")
    with pytest.raises(ValidationError):
        FastSettings()
