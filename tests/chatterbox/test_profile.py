"""VOXGATE_CHATTERBOX_PROFILE sizes batch, KV length and S3Gen batches together; a setting given
on its own wins over its profile's value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voxgate_server.engines.chatterbox_fast.engine import PROFILES, FastSettings


def test_balanced_is_the_default_and_the_shipped_values(monkeypatch):
    monkeypatch.delenv("VOXGATE_CHATTERBOX_PROFILE", raising=False)
    s = FastSettings()
    assert s.profile == "balanced" and (s.max_batch, s.max_len, s.s3gen_batch, s.s3gen_graph_batch) == (16, 1536, 16, 16)


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
