"""models.json strictness: wrong JSON types, non-finite numbers, duplicate keys and port clashes are
refused at load, naming the field (issue 17)."""

from __future__ import annotations

import json

import pytest

from voxgate_manager.config import ConfigError, check_listener_ports, load_models, parse_models


def proc(id_: str = "piper", port=8101, **kw):
    return {"id": id_, "runtime": {"type": "process", "command": ["{python}", "-m", "x"], "port": port}, **kw}


@pytest.mark.parametrize(
    "models, needle",
    [
        ([proc(port=True)], "models[0].runtime.port"),
        ([proc(port="18810")], "models[0].runtime.port"),
        ([proc(port=8101.0)], "models[0].runtime.port"),
        ([proc(idle_timeout_s=True)], "models[0].idle_timeout_s"),
        ([proc(concurrency=True)], "models[0].concurrency"),
        ([proc(hold_max_s="60")], "models[0].hold_max_s"),
        ([proc(idle_timeout_s=float("inf"))], "models[0].idle_timeout_s"),
        ([proc(drain_timeout_s=float("nan"))], "models[0].drain_timeout_s"),
        ([proc(), proc("b", port=8101)], "models[1].runtime.port"),
    ],
)
def test_wrong_types_name_the_field(models, needle):
    with pytest.raises(ConfigError) as exc:
        parse_models({"models": models})
    assert needle in str(exc.value)


def test_integer_still_fits_a_float_field():
    m = parse_models({"models": [proc(idle_timeout_s=5, hold_max_s=2.5)]}).models[0]
    assert m.idle_timeout_s == 5.0 and m.hold_max_s == 2.5


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_json_literals_are_refused(tmp_path, literal):
    p = tmp_path / "models.json"
    p.write_text('{"models": [{"id": "a", "idle_timeout_s": %s, "runtime": {"type": "process", "command": ["x"], "port": 9}}]}' % literal)
    with pytest.raises(ConfigError) as exc:
        load_models(p)
    assert literal in str(exc.value) and str(p) in str(exc.value)


def test_duplicate_keys_are_refused(tmp_path):
    p = tmp_path / "models.json"
    p.write_text('{"models": [{"id": "a", "port": 1, "runtime": {"type": "process", "command": ["x"], "port": 9101, "port": 9102}}]}')
    with pytest.raises(ConfigError) as exc:
        load_models(p)
    assert "'port' appears twice" in str(exc.value)


def test_two_models_on_one_port_across_hosts_named(tmp_path):
    p = tmp_path / "models.json"
    p.write_text(json.dumps({"models": [proc(), proc("b", port=8101)]}))
    with pytest.raises(ConfigError, match=r"models\[1\]\.runtime\.port: 8101 is also used by model 'piper'"):
        load_models(p)


@pytest.mark.parametrize("which, port", [("public", 8000), ("admin", 8001)])
def test_model_on_the_managers_own_port(which, port):
    cfg = parse_models({"models": [proc(), proc("b", port=port)]})
    with pytest.raises(ConfigError) as exc:
        check_listener_ports(cfg, {"public": ("127.0.0.1", 8000), "admin": ("127.0.0.1", 8001)})
    assert f"models[1].runtime.port: {port} is the manager's own {which} port" in str(exc.value)


def test_admin_port_zero_is_no_clash():
    cfg = parse_models({"models": [proc(port=8001)]})
    check_listener_ports(cfg, {"public": ("127.0.0.1", 8000), "admin": ("127.0.0.1", 0)})
