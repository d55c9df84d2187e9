"""The application API's speech goes through the manager's one request path (routing/gateway.py):
the response cache, quotas counted per user and fallback chains apply to /api/tts/generate as
they do to /v1/audio/speech. A real manager with real Piper; a broken model's start fails."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from manager_harness import ManagerProcess, piper_process_model
from piper_manager import auth, sign_up


def broken(model_id: str, **overrides):
    entry = piper_process_model(model_id, **overrides)
    entry["runtime"]["command"] = ["sh", "-c", "echo 'cannot load weights' >&2; exit 3"]
    return entry


def test_generate_uses_cache_quotas_and_fallbacks(tmp_path):
    quotas = tmp_path / "quotas.json"
    quotas.write_text(json.dumps({"default": {"chars_per_day": 120}}))
    m = ManagerProcess(tmp_path, [piper_process_model("piper"), broken("broken", fallback=["piper"], fallback_after_s=0.5)],
                       env={"VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data"), "VOXGATE_MANAGER_QUOTAS_FILE": str(quotas)})
    try:
        anna = sign_up(m.url, "anna")
        me = httpx.get(f"{m.url}/api/auth/me", headers=auth(anna), timeout=10).json()
        uid = me.get("id", me.get("user", {}).get("id"))

        def generate(text: str, model: str = "piper") -> httpx.Response:
            return httpx.post(f"{m.url}/api/tts/generate", headers=auth(anna), timeout=120,
                              json={"model_id": model, "text": text, "voice": "alloy", "format": "wav"})

        first = generate("Cached studio speech.")  # 21 characters
        assert first.status_code == 200 and first.headers["x-voxgate-cache"] == "miss", first.text
        assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
        httpx.post(f"{m.admin_url}/admin/models/piper/unload", timeout=30).raise_for_status()
        assert m.status("piper")["state"] == "stopped"
        # a cache hit through the app API: the stored answer, and the stopped model stays stopped
        hit = generate("Cached studio speech.")
        assert hit.status_code == 200 and hit.headers["x-voxgate-cache"] == "hit"
        assert hit.content == first.content
        assert m.status("piper")["state"] == "stopped"
        assert m.metric("voxgate_manager_cold_starts_total", model="piper") == 1
        # a model that cannot start is answered by its fallback, which the headers say
        fb = generate("The broken model is answered by piper.", "broken")  # 38 characters
        assert fb.status_code == 200, fb.text
        assert fb.headers["x-voxgate-model"] == "piper" and fb.headers["x-voxgate-requested-model"] == "broken"
        assert fb.headers["x-voxgate-fallback"] in ("cold_start", "start_failed", "crashed")
        # the user's characters count under user:<id>: 21 + 38 (a hit is free); 70 more would pass 120
        over = generate("x" * 10 + " This sentence is long enough to pass the daily character limit now.")
        assert over.status_code == 429, over.text
        err = over.json()["error"]
        assert err["code"] == "quota_exceeded" and err["type"] and f"user:{uid}" in err["message"]
        assert "chars_per_day=120" in err["message"] and int(over.headers["retry-after"]) > 0
        usage = httpx.get(f"{m.admin_url}/admin/usage", timeout=10).json()
        rows = {(r["key_id"], r["model"]): r for r in usage["usage"]}
        assert rows[(f"user:{uid}", "piper")]["chars"] == 21 + 38
        assert rows[(f"user:{uid}", "piper")]["requests"] == 3 and rows[(f"user:{uid}", "piper")]["cache_hits"] == 1
        assert m.metric("voxgate_manager_quota_rejections_total", key=f"user:{uid}") == 1
        # the studio's usage route: admins only, the same rows named by username, the limits beside them
        assert httpx.get(f"{m.url}/api/admin/usage", headers=auth(anna), timeout=10).status_code == 403
        made = subprocess.run([sys.executable, "-m", "voxgate_manager.cli", "create-admin", "root", "--password-stdin"],
                              input="admin password 1\n", text=True, capture_output=True, timeout=60,
                              env={**m.env, "VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data")})
        assert made.returncode == 0, made.stderr
        root = httpx.post(f"{m.url}/api/auth/login", json={"username": "root", "password": "admin password 1"}, timeout=30).json()
        mine = httpx.get(f"{m.url}/api/admin/usage", headers=auth(root), timeout=10).json()
        row = next(r for r in mine["usage"] if r["key_id"] == f"user:{uid}" and r["model"] == "piper")
        assert row["who"] == "anna" and row["kind"] == "user" and row["chars"] == 21 + 38 and row["audio_seconds"] > 1
        assert mine["limits"] == {"file": True, "default": {"chars_per_day": 120}, "entries": {}}
        bad = httpx.get(f"{m.url}/api/admin/usage", params={"since": "yesterday"}, headers=auth(root), timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    finally:
        m.stop()
