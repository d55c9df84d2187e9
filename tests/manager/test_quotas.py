"""Quotas and limits per API key, usage and cost in SQLite, and the speech feature flag."""

from __future__ import annotations

import calendar
import concurrent.futures as cf
import json
import time

import httpx
import pytest

from fake_providers import FakeProviders
from manager_harness import ManagerProcess
from voxgate_manager import db
from voxgate_manager.errors import APIError
from voxgate_manager.usage.limits import KeyLimits, QuotaFile
from voxgate_manager.usage.quota import Quota
from voxgate_manager.usage.store import UsageStore

OPENAI_KEY = "sk-test-openai-quota-SECRET"
KEYS = {"alice": "alice-key-1", "bob": "bob-key-2", "carol": "carol-key-3"}


@pytest.fixture
def fake():
    with FakeProviders(OPENAI_KEY, "unused") as f:
        yield f


def quota_file(tmp_path, data) -> str:
    p = tmp_path / "quotas.json"
    p.write_text(json.dumps(data))
    return str(p)


@pytest.fixture
def mgr(tmp_path, fake):
    started: list[ManagerProcess] = []

    def make(limits, extra_env=None) -> ManagerProcess:
        model = {"id": "oai", "upstream_model": "tts-1", "concurrency": 16,
                 "runtime": {"type": "openai", "base_url": fake.url + "/v1"},
                 "price": {"per_1k_chars": 15.0, "currency": "USD", "source": "https://openai.com/api/pricing/",
                           "as_of": "2026-12-01"}}
        env = {"OPENAI_API_KEY": OPENAI_KEY, "VOXGATE_API_KEYS": ",".join(KEYS.values()),
               "VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data"), "VOXGATE_MANAGER_CACHE": "0",
               "VOXGATE_MANAGER_QUOTAS_FILE": quota_file(tmp_path, limits), **(extra_env or {})}
        m = ManagerProcess(tmp_path, [model], env=env)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def say(m: ManagerProcess, who: str, text: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{m.url}/v1/audio/speech", json={"model": "oai", "input": text, "voice": "alloy"},
                      headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=timeout)


LIMITS = {"default": {"requests_per_minute": 100},
          "keys": {"alice": {"key": KEYS["alice"], "chars_per_day": 50, "max_seconds": 10},
                   "bob": {"key": KEYS["bob"], "requests_per_minute": 2},
                   "carol": {"key": KEYS["carol"], "audio_seconds_per_day": 3}}}


def test_each_limit_with_retry_after_naming_it_and_usage_with_cost_per_key(mgr):
    m = mgr(LIMITS)
    assert say(m, "alice", "x" * 20).status_code == 200
    assert say(m, "alice", "y" * 20).status_code == 200
    r = say(m, "alice", "z" * 20)
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded" and err["type"] == "rate_limit_error"
    assert "'alice'" in err["message"] and "chars_per_day=50" in err["message"] and "resets at" in err["message"]
    tomorrow = calendar.timegm(time.gmtime()[:3] + (0, 0, 0)) + 86400
    assert abs(int(r.headers["retry-after"]) - (tomorrow - time.time())) < 5
    r = say(m, "alice", "This text is far too long for one request of ten seconds at most. " * 3)
    assert r.status_code == 400 and r.json()["error"]["code"] == "max_seconds_exceeded"
    assert say(m, "bob", "one").status_code == 200 and say(m, "bob", "two").status_code == 200
    r = say(m, "bob", "three")
    assert r.status_code == 429 and "requests_per_minute=2" in r.json()["error"]["message"]
    assert 50 <= int(r.headers["retry-after"]) <= 60
    assert say(m, "carol", "a" * 30).status_code == 200  # ~2 s of audio reserved (estimated from the text)
    r = say(m, "carol", "b" * 30)
    assert r.status_code == 429 and "audio_seconds_per_day=3" in r.json()["error"]["message"]
    r = httpx.post(f"{m.url}/v1/audio/speech", json={"model": "oai", "input": "c" * 15, "voice": "alloy", "response_format": "pcm"},
                   headers={"Authorization": f"Bearer {KEYS['carol']}"}, timeout=30)
    assert r.status_code == 200  # a pcm answer's length is its size: the fake's 0.5 s tone is recorded, not the estimate
    usage = httpx.get(f"{m.admin_url}/admin/usage").json()
    rows = {(u["key_id"], u["model"]): u for u in usage["usage"]}
    assert rows[("alice", "oai")]["requests"] == 2 and rows[("alice", "oai")]["chars"] == 40
    assert rows[("alice", "oai")]["cost"] == pytest.approx(40 / 1000 * 15)
    assert usage["totals"]["bob"]["requests"] == 2 and usage["totals"]["bob"]["cost"] == pytest.approx(6 / 1000 * 15)
    assert rows[("carol", "oai")]["audio_seconds"] == pytest.approx(30 / 15 + 0.5)
    assert all(k not in json.dumps(usage) for k in KEYS.values())  # names, never keys
    assert m.metric("voxgate_manager_quota_rejections_total", key="alice") == 1
    import os
    import subprocess
    import sys

    from manager_harness import PYTHONPATH

    out = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "usage", "--admin-url", m.admin_url],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH}, timeout=30)
    assert out.returncode == 0, out
    alice = next(line.split() for line in out.stdout.splitlines() if line.startswith("alice ") and " oai " in line)
    assert alice[:4] == ["alice", "oai", "2", "40"] and alice[5] == f"{40 / 1000 * 15:.4f}"


def test_usage_survives_a_restart_and_limits_reload(mgr, tmp_path):
    m = mgr(LIMITS)
    assert say(m, "alice", "x" * 45).status_code == 200
    m.stop()
    m.start()
    r = say(m, "alice", "y" * 10)
    assert r.status_code == 429 and "(this request would bring it to 55)" in r.json()["error"]["message"]
    assert say(m, "alice", "y" * 5).status_code == 200
    raised = {**LIMITS, "keys": {**LIMITS["keys"], "alice": {**LIMITS["keys"]["alice"], "chars_per_day": 100}}}
    (tmp_path / "quotas.json").write_text("{not json")
    r = httpx.post(f"{m.admin_url}/admin/reload")
    assert r.status_code == 400 and "quotas not reloaded" in r.json()["error"]["message"]
    assert say(m, "alice", "z").status_code == 429  # the limits in force stayed
    (tmp_path / "quotas.json").write_text(json.dumps(raised))
    assert httpx.post(f"{m.admin_url}/admin/reload").status_code == 200
    assert say(m, "alice", "z" * 10).status_code == 200


def test_concurrent_requests_cannot_overrun_a_limit_together(mgr, fake):
    m = mgr({"keys": {"alice": {"key": KEYS["alice"], "chars_per_day": 100}}})
    text = "Held in flight #hold" + "." * 10  # 30 characters
    with cf.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(say, m, "alice", text) for _ in range(10)]
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.release.set()
        codes = sorted(f.result().status_code for f in futures)
    assert codes == [200] * 3 + [429] * 7
    usage = httpx.get(f"{m.admin_url}/admin/usage", params={"key": "alice"}).json()["usage"]
    assert usage[0]["chars"] == 90 and usage[0]["requests"] == 3


def test_the_speech_flag_turns_speech_off_without_stopping_the_manager(mgr):
    m = mgr({})
    assert say(m, "bob", "on").status_code == 200
    assert httpx.post(f"{m.admin_url}/admin/speech", json={"enabled": False}).json() == {"enabled": False}
    r = say(m, "bob", "off")
    assert r.status_code == 503 and r.json()["error"]["code"] == "speech_disabled" and r.headers["retry-after"]
    assert httpx.get(f"{m.url}/health").status_code == 200 and httpx.get(f"{m.url}/v1/models",
                                                                         headers={"Authorization": f"Bearer {KEYS['bob']}"}).status_code == 200
    assert httpx.post(f"{m.admin_url}/admin/speech", json={"enabled": "no"}).status_code == 400
    httpx.post(f"{m.admin_url}/admin/speech", json={"enabled": True})
    assert say(m, "bob", "on again").status_code == 200


def test_limits_reset_at_the_day_and_month_boundary(tmp_path):
    conn = db.connect(tmp_path / "usage.sqlite3")
    lim = KeyLimits(QuotaFile.model_validate({"keys": {"k": {"key": "tok", "chars_per_day": 10, "chars_per_month": 25}}}))
    q = Quota(UsageStore(conn), lim)
    day1 = calendar.timegm((2026, 11, 29, 23, 59, 0))
    q.admit("tok", 10, 1.0, now=day1).settle("m", True, None, 0.0, False, False)
    with pytest.raises(APIError) as exc:
        q.admit("tok", 1, 1.0, now=day1)
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "60"  # one minute to midnight UTC
    day2 = calendar.timegm((2026, 11, 30, 0, 0, 1))
    g = q.admit("tok", 10, 1.0, now=day2)  # a new day
    g.settle("m", True, None, 0.0, False, False)
    with pytest.raises(APIError) as exc:
        q.admit("tok", 6, 1.0, now=calendar.timegm((2026, 12, 1, 0, 0, 0)) - 10)
    assert "chars_per_day=10" in exc.value.message
    # 20 used in November; December starts a new month and a new day
    q.admit("tok", 10, 1.0, now=calendar.timegm((2026, 12, 1, 0, 0, 5))).settle("m", True, None, 0.0, False, False)
    days = [r[0] for r in conn.execute("SELECT day FROM usage_daily ORDER BY day")]
    assert days == ["2026-11-29", "2026-11-30", "2026-12-01"]
    # a failed request gives its reservation back
    q.admit("tok", 0, 1.0, now=calendar.timegm((2026, 12, 1, 0, 0, 6))).settle("m", False, None, 0.0, False, False)
    assert q.store.pending["k"] == [0, 0.0]
    conn.close()


def test_a_broken_quotas_file_or_data_dir_stops_the_manager_with_one_clear_line(tmp_path):
    import os
    import subprocess
    import sys

    from manager_harness import PYTHONPATH
    from ports import free_port

    (tmp_path / "models.json").write_text(json.dumps({"models": [{"id": "x", "runtime": {"type": "openai"}}]}))
    (tmp_path / "q.json").write_text(json.dumps({"default": {"chars_per_dya": 5}}))
    (tmp_path / "file").write_text("not a folder")
    for env, expect in (({"VOXGATE_MANAGER_QUOTAS_FILE": str(tmp_path / "q.json")},
                         "VOXGATE_MANAGER_QUOTAS_FILE: " + str(tmp_path / "q.json") + ": default.chars_per_dya: Extra inputs"),
                        ({"VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "file" / "sub")}, "cannot use VOXGATE_MANAGER_DATA_DIR=")):
        out = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "--config", str(tmp_path / "models.json"),
                              "--port", str(free_port()), "--admin-port", "0"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": PYTHONPATH, **env})
        assert out.returncode == 1 and expect in out.stderr and "Traceback" not in out.stderr, out.stderr
