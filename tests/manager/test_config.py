"""models.json validation: good files load, bad ones name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxgate_manager.config import ConfigError, DockerRuntime, ProcessRuntime, load_models, parse_models

ROOT = Path(__file__).resolve().parents[2]


def proc(id_: str = "piper", port: int = 8101, **kw):
    return {"id": id_, "runtime": {"type": "process", "command": ["{python}", "-m", "x"], "port": port}, **kw}


def test_shipped_models_json_is_valid():
    cfg = load_models(ROOT / "models.json")
    ids = [m.id for m in cfg.models]
    assert "chatterbox-turbo" in ids and "piper" in ids
    ct = cfg.resolve("chatterbox-turbo")
    assert isinstance(ct.runtime, DockerRuntime) and ct.runtime.gpus is not None
    assert ct.runtime.image == "voxgate/tts-server:gpu"
    assert isinstance(cfg.resolve("piper").runtime, ProcessRuntime)
    assert cfg.resolve(None).id == cfg.default_model or cfg.models[0].id


def test_defaults():
    m = parse_models({"models": [proc()]}).models[0]
    assert m.idle_timeout_s == 600
    assert m.readiness.path == "/health" and m.readiness.expect_status == 200
    assert m.warmup is None and m.concurrency is None  # taken from the server's capabilities


@pytest.mark.parametrize(
    "models, needle",
    [
        ([proc(port=70000)], "models[0].runtime.port"),
        ([{"id": "a", "runtime": {"type": "docker", "port": 9000}}], "models[0].runtime.image"),
        ([{"id": "a", "runtime": {"type": "ftp", "port": 9000}}], "models[0].runtime"),
        ([proc(idle_timeout_s=-1)], "models[0].idle_timeout_s"),
        ([proc(), proc("b", port=8101)], "models[1].runtime.port"),
        ([proc(), proc("b", port=8102, aliases=["piper"])], "'piper' is already used"),
        ([proc(readiness={"pathx": "/"})], "models[0].readiness.pathx"),
        ([{"id": "r", "runtime": {"type": "remote", "base_url": "lan:8000"}}], "models[0].runtime.base_url"),
        ([{"id": "d", "runtime": {"type": "docker", "image": "x", "port": 9000, "mem_limit": "4 GB"}}],
         "models[0].runtime.mem_limit"),
    ],
)
def test_bad_files_name_the_field(models, needle):
    with pytest.raises(ConfigError) as exc:
        parse_models({"models": models})
    assert needle in str(exc.value)


def test_not_json_names_the_line(tmp_path):
    p = tmp_path / "models.json"
    p.write_text('{"models": [\n  {,}\n]}')
    with pytest.raises(ConfigError) as exc:
        load_models(p)
    assert "line 2" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_models(tmp_path / "nope.json")


def test_resolve_aliases_and_spec_hash():
    cfg = parse_models({"models": [proc(aliases=["tts-1"]), proc("b", port=8102)]})
    assert cfg.resolve("tts-1").id == "piper"
    assert cfg.resolve("nope") is None
    a = cfg.models[0]
    b = parse_models({"models": [proc(aliases=["tts-1"], idle_timeout_s=5)]}).models[0]
    assert a.spec_hash() != b.spec_hash() and a.runtime_hash() == b.runtime_hash()


def test_shipped_multilingual_entry_is_a_second_gpu_container():
    cfg = load_models(ROOT / "models.json")
    mtl, turbo = cfg.resolve("chatterbox-multilingual"), cfg.resolve("chatterbox-turbo")
    assert isinstance(mtl.runtime, DockerRuntime) and mtl.runtime.gpus is not None
    assert mtl.runtime.image == turbo.runtime.image == "voxgate/tts-server:gpu"
    assert mtl.runtime.port != turbo.runtime.port
    assert mtl.runtime.environment["VOXGATE_ENGINES"] == "chatterbox-multilingual"
