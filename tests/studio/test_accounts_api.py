"""Accounts over HTTP, in-process on a real SQLite file: every auth flow, refresh-token reuse,
lockout, rate limits, roles, API keys on the OpenAI routes (revocation at once), no leaks."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys


from app_client import ROOT_ENV, app_client, assert_envelope, bearer, register


async def test_register_login_me_logout(tmp_path):
    async with app_client(tmp_path) as c:
        reg = await register(c, "alice")
        assert reg["user"]["role"] == "user" and reg["token_type"] == "bearer" and reg["refresh_token"].startswith("vgr-")
        me = await c.get("/api/auth/me", headers=bearer(reg["access_token"]))
        assert me.status_code == 200 and me.json()["username"] == "alice" and me.json()["via"] == "session"
        assert_envelope(await c.post("/api/auth/register", json={"username": "ALICE", "password": "another password"}),
                        409, "username_taken")
        assert_envelope(await c.post("/api/auth/register", json={"username": "bob", "password": "short"}), 400, "weak_password")
        assert_envelope(await c.post("/api/auth/register", json={"username": "bob"}), 400, "missing_required_parameter")
        assert_envelope(await c.post("/api/auth/login", content=b"{not json"), 400, "invalid_json")
        assert_envelope(await c.post("/api/auth/login", json={"username": "alice", "password": "wrong password"}),
                        401, "invalid_credentials")
        login = await c.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
        assert login.status_code == 200
        access = login.json()["access_token"]
        out = await c.post("/api/auth/logout", headers=bearer(access))
        assert out.status_code == 200
        # the session is over at once: its access token and its refresh token no longer work
        assert_envelope(await c.get("/api/auth/me", headers=bearer(access)), 401, "invalid_token")
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}), 401)
        # the other session (from register) is untouched
        assert (await c.get("/api/auth/me", headers=bearer(reg["access_token"]))).status_code == 200
        assert_envelope(await c.get("/api/auth/me"), 401, "invalid_api_key")
        assert_envelope(await c.get("/api/auth/me", headers=bearer("a.b.c")), 401, "invalid_token")
    # the database is a real file under the data folder
    rows = sqlite3.connect(tmp_path / "data" / "app.sqlite3").execute("SELECT username, password_hash FROM users").fetchall()
    assert rows[0][0] == "alice" and rows[0][1].startswith("$argon2id$")


async def test_registration_can_be_turned_off(tmp_path):
    async with app_client(tmp_path, allow_register=False) as c:
        assert_envelope(await c.post("/api/auth/register", json={"username": "x1", "password": "long enough pw"}),
                        403, "registration_disabled")
        assert (await c.get("/api/auth/config")).json()["registration"] is False


async def test_refresh_rotates_and_reuse_revokes_the_family(tmp_path):
    async with app_client(tmp_path) as c:
        first = await register(c, "carol")
        r1 = first["refresh_token"]
        second = await c.post("/api/auth/refresh", json={"refresh_token": r1})
        assert second.status_code == 200
        r2, a2 = second.json()["refresh_token"], second.json()["access_token"]
        assert r2 != r1
        third = await c.post("/api/auth/refresh", json={"refresh_token": r2})
        assert third.status_code == 200
        r3, a3 = third.json()["refresh_token"], third.json()["access_token"]
        assert (await c.get("/api/auth/me", headers=bearer(a3))).status_code == 200
        # r1 presented again: someone copied it. The whole family is revoked.
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": r1}), 401, "refresh_token_reused")
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": r3}), 401)
        for access in (first["access_token"], a2, a3):
            assert_envelope(await c.get("/api/auth/me", headers=bearer(access)), 401)
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": "vgr-unknown"}), 401, "invalid_refresh_token")
        # signing in again starts a new, working family
        again = await c.post("/api/auth/login", json={"username": "carol", "password": "correct horse battery"})
        assert (await c.get("/api/auth/me", headers=bearer(again.json()["access_token"]))).status_code == 200


async def test_access_token_expires(tmp_path):
    async with app_client(tmp_path, access_token_ttl_s=1) as c:
        tokens = await register(c, "dave")
        assert (await c.get("/api/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
        await asyncio.sleep(2.1)
        assert_envelope(await c.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)
        fresh = await c.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (await c.get("/api/auth/me", headers=bearer(fresh.json()["access_token"]))).status_code == 200


async def test_an_access_token_lives_at_least_its_expires_in(tmp_path):
    """JWT times are whole seconds; the expiry is rounded up, never cut short by the fraction of
    the second the token was issued in (a 1 s token used to live anywhere between 0 and 1 s)."""
    import time

    import jwt

    async with app_client(tmp_path, access_token_ttl_s=1) as c:
        for name in ("gina", "hank", "iris"):
            before = time.time()
            tokens = await register(c, name)
            claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            assert claims["exp"] >= before + tokens["expires_in"]
            assert claims["exp"] - claims["iat"] <= tokens["expires_in"] + 1


async def test_session_lifetime_bounds_refresh(tmp_path):
    async with app_client(tmp_path, session_ttl_s=1) as c:
        tokens = await register(c, "erin")
        await asyncio.sleep(1.2)
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "session_expired")


async def test_lockout_per_account_with_backoff(tmp_path):
    async with app_client(tmp_path, login_lockout_after=3, login_lockout_s=1.0, auth_rate_per_min=100) as c:
        await register(c, "frank")
        bad = {"username": "frank", "password": "not the password"}
        good = {"username": "frank", "password": "correct horse battery"}
        for _ in range(2):
            assert_envelope(await c.post("/api/auth/login", json=bad), 401, "invalid_credentials")
        r = await c.post("/api/auth/login", json=bad)  # the third failure locks the account
        assert_envelope(r, 429, "account_locked")
        assert int(r.headers["retry-after"]) >= 1
        # locked: even the right password is refused, and the type is a rate-limit error
        err = assert_envelope(await c.post("/api/auth/login", json=good), 429, "account_locked")
        assert err["type"] == "rate_limit_error"
        # other accounts are not locked by it
        await register(c, "grace")
        assert (await c.post("/api/auth/login", json={"username": "grace", "password": "correct horse battery"})).status_code == 200
        await asyncio.sleep(1.1)
        # one more failure after the lock: the lock doubles (2 s)
        r = await c.post("/api/auth/login", json=bad)
        assert_envelope(r, 429, "account_locked")
        assert int(r.headers["retry-after"]) >= 2
        await asyncio.sleep(2.1)
        assert (await c.post("/api/auth/login", json=good)).status_code == 200
        # a good sign-in resets the count
        assert_envelope(await c.post("/api/auth/login", json=bad), 401, "invalid_credentials")
        # unknown usernames lock the same way (answers do not reveal which accounts exist)
        for _ in range(2):
            assert_envelope(await c.post("/api/auth/login", json={"username": "nobody", "password": "x"}), 401)
        assert_envelope(await c.post("/api/auth/login", json={"username": "nobody", "password": "x"}), 429, "account_locked")


async def test_rate_limit_per_address(tmp_path):
    async with app_client(tmp_path, auth_rate_per_min=4, login_lockout_after=0) as c:
        for _ in range(4):
            assert (await c.post("/api/auth/login", json={"username": "h", "password": "x"})).status_code == 401
        r = await c.post("/api/auth/login", json={"username": "h", "password": "x"})
        assert_envelope(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert_envelope(await c.post("/api/auth/refresh", json={"refresh_token": "vgr-x"}), 429, "rate_limited")


def _cli(tmp_path, *args, password="admin password 1"):
    env = {**os.environ, **ROOT_ENV, "VOXGATE_MANAGER_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "voxgate_manager.cli", *args, "--password-stdin"], input=password + "\n",
                          capture_output=True, text=True, env=env, timeout=60)


async def test_first_admin_from_the_cli_and_role_checks(tmp_path):
    done = _cli(tmp_path, "create-admin", "root")
    assert done.returncode == 0, done.stderr
    assert "created admin 'root'" in done.stdout
    weak = _cli(tmp_path, "create-admin", "root2", password="short")
    assert weak.returncode == 1 and "at least 8" in weak.stderr
    async with app_client(tmp_path) as c:
        user = await register(c, "ivan")
        admin = (await c.post("/api/auth/login", json={"username": "root", "password": "admin password 1"})).json()
        assert admin["user"]["role"] == "admin"
        err = assert_envelope(await c.get("/api/admin/users", headers=bearer(user["access_token"])), 403, "forbidden")
        assert err["type"] == "permission_error"
        assert_envelope(await c.get("/api/admin/keys", headers=bearer(user["access_token"])), 403)
        assert_envelope(await c.get("/api/admin/users"), 401)
        users = await c.get("/api/admin/users", headers=bearer(admin["access_token"]))
        assert {u["username"] for u in users.json()["data"]} == {"root", "ivan"}
        # an admin creates users; a new admin can act at once
        made = await c.post("/api/admin/users", headers=bearer(admin["access_token"]),
                            json={"username": "judy", "password": "judy password", "role": "admin"})
        assert made.status_code == 201 and made.json()["role"] == "admin"
        # disabling a user ends their sessions at once
        uid = user["user"]["id"]
        patched = await c.patch(f"/api/admin/users/{uid}", headers=bearer(admin["access_token"]), json={"disabled": True})
        assert patched.json()["disabled"] is True
        assert_envelope(await c.get("/api/auth/me", headers=bearer(user["access_token"])), 401)
        assert_envelope(await c.post("/api/auth/login", json={"username": "ivan", "password": "correct horse battery"}),
                        403, "account_disabled")
        # the last admin cannot be demoted
        root_id = admin["user"]["id"]
        await c.delete(f"/api/admin/users/{made.json()['id']}", headers=bearer(admin["access_token"]))
        assert_envelope(await c.patch(f"/api/admin/users/{root_id}", headers=bearer(admin["access_token"]), json={"role": "user"}),
                        409, "last_admin")


async def test_user_keys_on_openai_routes_and_revocation_at_once(tmp_path):
    async with app_client(tmp_path, api_keys=["configured-key"]) as c:
        a = await register(c, "kim")
        b = await register(c, "lee")
        made = await c.post("/api/keys", headers=bearer(a["access_token"]), json={"name": "laptop"})
        assert made.status_code == 201
        key, key_id = made.json()["key"], made.json()["id"]
        assert key.startswith("vg-") and made.json()["prefix"] == key[:10]
        # configured keys and the user's key both open the OpenAI routes
        assert (await c.get("/v1/models", headers=bearer("configured-key"))).status_code == 200
        assert (await c.get("/v1/models", headers=bearer(key))).status_code == 200
        assert (await c.get("/v1/models", headers={"X-Api-Key": key})).status_code == 200
        assert_envelope(await c.get("/v1/models", headers=bearer("vg-made-up")), 401, "invalid_api_key")
        assert_envelope(await c.post("/v1/audio/speech", headers=bearer("vg-made-up"), json={"input": "x", "voice": "alloy"}),
                        401, "invalid_api_key")
        # an access token is not accepted on /v1 unless the setting says so
        assert_envelope(await c.get("/v1/models", headers=bearer(a["access_token"])), 401)
        # the key works on the application API too, as its owner
        me = await c.get("/api/auth/me", headers=bearer(key))
        assert me.json()["username"] == "kim" and me.json()["via"] == "api_key"
        # the key is stored hashed, never in clear
        db = sqlite3.connect(tmp_path / "data" / "app.sqlite3")
        assert db.execute("SELECT COUNT(*) FROM api_keys WHERE key_hash = ?", (key,)).fetchone()[0] == 0
        assert key not in (tmp_path / "data" / "app.sqlite3").read_bytes().decode("latin-1")
        # another user neither sees nor revokes it
        assert (await c.get("/api/keys", headers=bearer(b["access_token"]))).json()["data"] == []
        assert_envelope(await c.delete(f"/api/keys/{key_id}", headers=bearer(b["access_token"])), 404, "key_not_found")
        listed = (await c.get("/api/keys", headers=bearer(a["access_token"]))).json()["data"]
        assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0] and listed[0]["last_used_at"]
        # revoked: the very next request fails
        revoked = await c.delete(f"/api/keys/{key_id}", headers=bearer(a["access_token"]))
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        assert_envelope(await c.get("/v1/models", headers=bearer(key)), 401, "invalid_api_key")
        assert_envelope(await c.get("/api/auth/me", headers=bearer(key)), 401)
        assert (await c.get("/v1/models", headers=bearer("configured-key"))).status_code == 200


async def test_openai_routes_accept_user_tokens_when_enabled_and_require_key(tmp_path):
    async with app_client(tmp_path, openai_accept_user_tokens=True, require_key=True) as c:
        assert_envelope(await c.get("/v1/models"), 401)  # no configured keys, yet a key is required
        a = await register(c, "max")
        assert (await c.get("/v1/models", headers=bearer(a["access_token"]))).status_code == 200


async def test_no_cross_user_leaks_of_clips_jobs_keys(tmp_path):
    async with app_client(tmp_path) as c:
        a = await register(c, "nina")
        b = await register(c, "omar")
        clip = c.services.clips.save(a["user"]["id"], "piper", "alloy", "wav", "secret words", b"RIFF....WAVE")
        ha = (await c.get("/api/tts/history", headers=bearer(a["access_token"]))).json()["data"]
        assert [x["id"] for x in ha] == [clip] and ha[0]["text"] == "secret words"
        assert (await c.get("/api/tts/history", headers=bearer(b["access_token"]))).json()["data"] == []
        assert_envelope(await c.get(f"/api/tts/history/{clip}/audio", headers=bearer(b["access_token"])), 404, "clip_not_found")
        assert_envelope(await c.delete(f"/api/tts/history/{clip}", headers=bearer(b["access_token"])), 404)
        assert (await c.get(f"/api/tts/history/{clip}/audio", headers=bearer(a["access_token"]))).content == b"RIFF....WAVE"
        for path in ("/api/tts/jobs/job_0123456789abcdef", "/api/tts/jobs/job_0123456789abcdef/events",
                     "/api/tts/jobs/job_0123456789abcdef/audio"):
            assert_envelope(await c.get(path, headers=bearer(b["access_token"])), 404, "job_not_found")
        for path in ("/api/tts/models", "/api/tts/history", "/api/tts/jobs", "/api/keys"):
            assert_envelope(await c.get(path), 401)


async def test_application_api_validation_errors_are_envelopes(tmp_path):
    async with app_client(tmp_path, generate_max_chars=50) as c:
        a = await register(c, "pia")
        h = bearer(a["access_token"])
        assert_envelope(await c.post("/api/tts/generate", headers=h, json={"text": "x" * 51}), 400, "text_too_long")
        assert_envelope(await c.post("/api/tts/generate", headers=h, json={"text": "hi", "speed": 9}), 400, "invalid_value")
        assert_envelope(await c.post("/api/tts/generate", headers=h, json={"text": "hi", "format": "ogg"}), 400)
        assert_envelope(await c.post("/api/tts/generate", headers=h, json={"text": "hi", "model_id": "nope"}), 404, "model_not_found")
        assert_envelope(await c.post("/api/tts/jobs", headers=h, json={"text": "x" * 100_001}), 400, "text_too_long")
        models = (await c.get("/api/tts/models", headers=h)).json()
        card = models["data"][0]
        assert card["id"] == "piper" and card["state"] == "stopped" and card["max_characters"] == 50
        assert card["cost"]["hint"] == "local CPU" and "wav" in card["formats"] and models["default_model"] == "piper"


async def test_cors_origins_setting(tmp_path):
    async with app_client(tmp_path, cors_origins=["http://app.lan:3000"]) as c:
        pre = await c.options("/api/tts/generate", headers={"Origin": "http://app.lan:3000", "Access-Control-Request-Method": "POST",
                                                             "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.lan:3000"
        # the speech fast path answers with the header too (here a 400 for a bad body)
        r = await c.post("/v1/audio/speech", content=b"nope", headers={"Origin": "http://app.lan:3000",
                                                                       "Content-Type": "application/json"})
        assert r.status_code == 400 and r.headers["access-control-allow-origin"] == "http://app.lan:3000"
        other = await c.get("/api/auth/config", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    async with app_client(tmp_path) as c:  # default: no CORS headers at all
        r = await c.get("/api/auth/config", headers={"Origin": "http://app.lan:3000"})
        assert "access-control-allow-origin" not in r.headers
