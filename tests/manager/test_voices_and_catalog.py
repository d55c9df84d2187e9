"""The pure parts behind the LAN clients: voice presets, the catalog's merge of reported and
declared voices, Wyoming's voice names, and models.json's validation of the new fields."""

from __future__ import annotations

import json

import pytest
from wyoming.tts import SynthesizeVoice

from voxgate_manager.config import ConfigError, parse_models
from voxgate_manager.manager import Manager
from voxgate_manager.settings import ManagerSettings
from voxgate_manager.voices import VoicePreset, apply_voice_preset
from voxgate_manager.wyoming.handler import VoiceError, clean_text, resolve_voice
from voxgate_manager.wyoming.info import build_info


def entry(model_id: str, port: int, **extra):
    return {"id": model_id, "runtime": {"type": "remote", "base_url": f"http://127.0.0.1:{port}"}, **extra}


def make_manager(tmp_path, *entries, cache: str = "") -> Manager:
    models = parse_models({"models": list(entries)})
    settings = ManagerSettings()
    settings.catalog_cache = cache
    m = Manager(settings, models)
    for spec in models.models:
        m.controllers[spec.id] = m._controller(spec)
    return m


def test_preset_replaces_voice_and_settings_and_passes_extras_on() -> None:
    presets = {"narrator": VoicePreset(voice="joe", speed=0.9, temperature=0.6, exaggeration=0.7, description="calm")}
    body = {"model": "tts-1", "input": "x", "voice": "narrator", "response_format": "mp3", "speed": 1}
    assert apply_voice_preset(presets, body) == "narrator"
    assert body == {"model": "tts-1", "input": "x", "voice": "joe", "response_format": "mp3", "speed": 0.9,
                    "temperature": 0.6, "exaggeration": 0.7}
    other = {"voice": "joe", "speed": 1}
    assert apply_voice_preset(presets, other) is None and other == {"voice": "joe", "speed": 1}
    assert apply_voice_preset(presets, {"voice": {"id": "narrator"}}) is None  # only string voices name presets


def test_models_json_checks_presets_and_declared_voices() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.voice_presets\.slow\.speed"):
        parse_models({"models": [entry("a", 1, voice_presets={"slow": {"voice": "joe", "speed": 9}})]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.voices\[0\]\.id"):
        parse_models({"models": [entry("a", 1, voices=[{"name": "no id"}])]})
    a = parse_models({"models": [entry("a", 1)]}).models[0]
    b = parse_models({"models": [entry("a", 1, voice_presets={"n": {"voice": "joe"}}, voices=[{"id": "joe"}])]}).models[0]
    assert a.spec_hash() == b.spec_hash()  # presets and voices never restart a model on reload


def test_catalog_merges_reported_declared_and_presets(tmp_path) -> None:
    m = make_manager(tmp_path, entry("piper", 1, aliases=["tts-1"], voices=[{"id": "declared", "language": "en-GB"}],
                                     voice_presets={"narrator": {"voice": "joe", "speed": 0.9}}))
    ctl = m.controllers["piper"]
    cat = m.catalog
    assert [v["id"] for v in cat.voices(ctl)] == ["declared", "narrator"] and cat.source(ctl) == "models.json"
    cat.reports["piper"] = {"voices": [{"id": "joe", "name": "joe", "language": "en-US"},
                                       {"id": "alloy", "name": "alloy", "alias_of": "joe"}],
                            "capabilities": {"languages": ["en"]}}
    voices = {v["id"]: v for v in cat.voices(ctl)}
    assert list(voices) == ["joe", "alloy", "narrator"] and cat.source(ctl) == "server"  # the server's list wins
    assert voices["narrator"]["language"] == "en-US" and voices["narrator"]["preset_of"] == "joe"
    assert cat.languages(ctl, voices["alloy"]) == ["en-US"]  # an alias speaks its base voice's language
    assert cat.default_voice(ctl) == "joe"
    info = build_info(m)
    [prog] = info.tts
    assert prog.supports_synthesize_streaming and [v.name for v in prog.voices] == ["piper:joe", "piper:alloy", "piper:narrator"]


def test_catalog_cache_survives_a_restart(tmp_path) -> None:
    path = str(tmp_path / "state" / "catalog.json")
    m = make_manager(tmp_path, entry("piper", 1), cache=path)
    m.catalog.reports["piper"] = {"voices": [{"id": "joe", "name": "joe"}], "capabilities": {"formats": ["pcm"]}}
    m.catalog._save()
    again = make_manager(tmp_path, entry("piper", 1), cache=path)
    assert [v["id"] for v in again.catalog.voices(again.controllers["piper"])] == ["joe"]
    assert json.loads((tmp_path / "state" / "catalog.json").read_text())["piper"]["capabilities"] == {"formats": ["pcm"]}


def test_wyoming_voice_names_route_to_models(tmp_path) -> None:
    m = make_manager(tmp_path, entry("piper", 1, aliases=["tts-1"]), entry("gpu", 2, aliases=["tts-1-hd"]))
    m.catalog.reports["piper"] = {"voices": [{"id": "joe", "name": "joe"}]}

    def r(name=None, speaker=None, program=None):
        voice = SynthesizeVoice(name=name, speaker=speaker) if name or speaker else None
        ctl, v = resolve_voice(m, voice, program)
        return ctl.id, v

    assert r("piper:joe") == ("piper", "joe")
    assert r("gpu:narrator") == ("gpu", "narrator")  # nothing known of gpu's voices: its server judges
    assert r("tts-1-hd") == ("gpu", "alloy")  # a model's name: its default voice
    assert r("gpu", speaker="ada") == ("gpu", "ada")
    assert r("joe") == ("piper", "joe")  # bare: the default model
    assert r("ada", program="gpu") == ("gpu", "ada")  # bare: the selected program's model
    assert r() == ("piper", "joe")
    with pytest.raises(VoiceError) as err:
        r("piper:nobody")
    assert err.value.code == "voice_not_found" and "joe" in err.value.message
    with pytest.raises(VoiceError):
        r("nomodel:x")  # not a model prefix: a voice of the default model, which has none by that name


def test_clean_text_joins_lines() -> None:
    assert clean_text("  Hello\nthere.\n") == "Hello there."
