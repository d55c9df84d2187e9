"""Accounts: users, logins, rotating refresh tokens, short-lived JWT access tokens, API keys.

No HTTP here: errors are ``AuthError`` with the status and code the routes turn into OpenAI's
envelope. Access tokens carry the session (refresh family) id, and every use checks that the
session is still open, so logout, a detected refresh-token reuse or disabling a user take effect
at once rather than when the token expires."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import jwt

from voxgate_manager.accounts.passwords import hash_password, needs_rehash, password_problem, verify_password
from voxgate_manager.accounts.sqlite import Database, migrate

ROLES = ("admin", "user")
KEY_PREFIX = "vg-"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
ISSUER = "voxgate-manager"


class AuthError(Exception):
    def __init__(self, status: int, message: str, code: str, *, param: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.retry_after_s = status, message, code, param, retry_after_s


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "role": self.role, "disabled": self.disabled,
                "created_at": int(self.created_at)}


@dataclass(frozen=True)
class Principal:
    """Who a request is: a user by access token (``session`` set) or by API key (``key_id`` set)."""

    user: User
    session: str | None = None
    key_id: str | None = None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["username"], row["role"], bool(row["disabled"]), row["created_at"])


class Accounts:
    def __init__(self, db: Database, *, access_ttl_s: float = 900, session_ttl_s: float = 30 * 86400,
                 secret: str = "") -> None:
        self.db = db
        migrate(db, "voxgate_manager.accounts")
        self.access_ttl_s = access_ttl_s
        self.session_ttl_s = session_ttl_s
        self._secret = secret or self._stored_secret()

    def _stored_secret(self) -> str:
        """The signing key: generated once and kept in the database, so tokens survive a restart."""
        row = self.db.one("SELECT value FROM app_secrets WHERE name = 'jwt'")
        if row:
            return row["value"]
        value = secrets.token_urlsafe(48)
        self.db.execute("INSERT OR IGNORE INTO app_secrets (name, value) VALUES ('jwt', ?)", (value,))
        return self.db.one("SELECT value FROM app_secrets WHERE name = 'jwt'")["value"]

    # -- users --------------------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: str = "user") -> User:
        """Hashes with argon2 (tens of ms): call it off the event loop."""
        username = username.strip()
        if not USERNAME.match(username):
            raise AuthError(400, "A username has 2-64 letters, digits or . _ @ - and starts with a letter or digit.",
                            "invalid_username", param="username")
        problem = password_problem(password)
        if problem:
            raise AuthError(400, problem, "weak_password", param="password")
        if role not in ROLES:
            raise AuthError(400, f"role must be one of {', '.join(ROLES)}.", "invalid_value", param="role")
        try:
            cur = self.db.execute("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                                  (username, hash_password(password), role, time.time()))
        except sqlite3.IntegrityError:
            raise AuthError(409, f"The username '{username}' is taken.", "username_taken", param="username") from None
        return self.user(cur.lastrowid)  # type: ignore[return-value]

    def user(self, user_id: int) -> User | None:
        row = self.db.one("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    def users(self) -> list[User]:
        return [_user(r) for r in self.db.all("SELECT * FROM users ORDER BY id")]

    def count_admins(self) -> int:
        return self.db.one("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0")["n"]

    def update_user(self, user_id: int, *, role: str | None = None, disabled: bool | None = None,
                    password: str | None = None) -> User:
        user = self.user(user_id)
        if user is None:
            raise AuthError(404, f"No user with id {user_id}.", "user_not_found")
        if role is not None and role not in ROLES:
            raise AuthError(400, f"role must be one of {', '.join(ROLES)}.", "invalid_value", param="role")
        demoting = user.is_admin and not user.disabled and ((role is not None and role != "admin") or disabled)
        if demoting and self.count_admins() <= 1:
            raise AuthError(409, "This is the last active admin; make another admin first.", "last_admin")
        if role is not None:
            self.db.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
        if disabled is not None:
            self.db.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            if disabled:
                self.revoke_sessions(user_id, "disabled")
        if password is not None:
            problem = password_problem(password)
            if problem:
                raise AuthError(400, problem, "weak_password", param="password")
            self.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(password), user_id))
            self.revoke_sessions(user_id, "password_changed")
        return self.user(user_id)  # type: ignore[return-value]

    def delete_user(self, user_id: int) -> None:
        user = self.user(user_id)
        if user is None:
            raise AuthError(404, f"No user with id {user_id}.", "user_not_found")
        if user.is_admin and not user.disabled and self.count_admins() <= 1:
            raise AuthError(409, "This is the last active admin; make another admin first.", "last_admin")
        self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))

    # -- login and sessions -------------------------------------------------------------------

    def check_password(self, username: str, password: str) -> User | None:
        """The user if the password is right (argon2: call it off the event loop)."""
        row = self.db.one("SELECT * FROM users WHERE username = ?", (username.strip(),))
        if not verify_password(row["password_hash"] if row else None, password) or row is None:
            return None
        if needs_rehash(row["password_hash"]):
            self.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(password), row["id"]))
        return _user(row)

    def start_session(self, user: User) -> dict[str, Any]:
        if user.disabled:
            raise AuthError(403, "This account is disabled.", "account_disabled")
        now = time.time()
        family = secrets.token_urlsafe(16)
        self.db.execute("INSERT INTO sessions (family, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                        (family, user.id, now, now + self.session_ttl_s))
        self.db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user.id))
        refresh = self._new_refresh(user.id, family, now + self.session_ttl_s, now)
        return self._tokens(user, family, refresh, now + self.session_ttl_s)

    def _new_refresh(self, user_id: int, family: str, expires_at: float, now: float, conn: Any = None) -> str:
        token = "vgr-" + secrets.token_urlsafe(32)
        (conn or self.db).execute(
            "INSERT INTO refresh_tokens (user_id, family, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (user_id, family, _sha256(token), now, expires_at))
        return token

    def _tokens(self, user: User, family: str, refresh: str, session_expires_at: float) -> dict[str, Any]:
        now = time.time()
        # JWT times are whole seconds: rounding the expiry up keeps every token valid for at least
        # the ``expires_in`` it is sent with (truncating "now" cut up to a second off it)
        access = jwt.encode({"iss": ISSUER, "sub": str(user.id), "role": user.role, "sid": family, "typ": "access",
                             "iat": int(now), "exp": math.ceil(now + int(self.access_ttl_s)),
                             "jti": secrets.token_hex(8)},
                            self._secret, algorithm="HS256")
        return {"access_token": access, "token_type": "bearer", "expires_in": int(self.access_ttl_s),
                "refresh_token": refresh, "refresh_expires_at": int(session_expires_at), "user": user.public()}

    def refresh(self, token: str) -> dict[str, Any]:
        """Rotate: the presented token is spent and a new one issued in the same family. A token
        presented a second time means it was copied: the whole family (session) is revoked."""
        now = time.time()
        reused_family = None
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM refresh_tokens WHERE token_hash = ?", (_sha256(token),)).fetchone()
            if row is None:
                raise AuthError(401, "The refresh token is not valid.", "invalid_refresh_token")
            session = conn.execute("SELECT * FROM sessions WHERE family = ?", (row["family"],)).fetchone()
            if row["used_at"] is not None or row["revoked_at"] is not None:
                if session is not None and session["revoked_at"] is None:
                    reused_family = row["family"]
                    conn.execute("UPDATE sessions SET revoked_at = ?, revoked_reason = 'refresh_token_reused' WHERE family = ?",
                                 (now, row["family"]))
                    conn.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                                 (now, row["family"]))
            elif session is None or session["revoked_at"] is not None or row["expires_at"] <= now:
                raise AuthError(401, "The session has ended; sign in again.", "session_expired")
            else:
                user_row = conn.execute("SELECT * FROM users WHERE id = ?", (row["user_id"],)).fetchone()
                if user_row is None or user_row["disabled"]:
                    raise AuthError(401, "The session has ended; sign in again.", "session_expired")
                conn.execute("UPDATE refresh_tokens SET used_at = ? WHERE id = ?", (now, row["id"]))
                new = self._new_refresh(row["user_id"], row["family"], row["expires_at"], now, conn)
                user = _user(user_row)
                family, expires = row["family"], row["expires_at"]
        if reused_family is not None or row["used_at"] is not None or row["revoked_at"] is not None:
            raise AuthError(401, "This refresh token was already used; the session is revoked. Sign in again.",
                            "refresh_token_reused")
        return self._tokens(user, family, new, expires)

    def logout(self, family: str) -> None:
        now = time.time()
        self.db.execute("UPDATE sessions SET revoked_at = ?, revoked_reason = 'logout' WHERE family = ? AND revoked_at IS NULL",
                        (now, family))
        self.db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL", (now, family))

    def logout_by_refresh(self, token: str) -> None:
        row = self.db.one("SELECT family FROM refresh_tokens WHERE token_hash = ?", (_sha256(token),))
        if row:
            self.logout(row["family"])

    def revoke_sessions(self, user_id: int, reason: str) -> None:
        now = time.time()
        self.db.execute("UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL",
                        (now, reason, user_id))
        self.db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, user_id))

    # -- verifying a bearer token -------------------------------------------------------------

    def principal(self, token: str) -> Principal | None:
        """The user behind an access token or a per-user API key, or None."""
        if token.startswith(KEY_PREFIX):
            return self._by_key(token)
        if token.count(".") != 2:
            return None
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "sub", "sid", "typ"]})
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access":
            return None
        row = self.db.one(
            "SELECT u.*, s.revoked_at AS s_revoked, s.expires_at AS s_expires FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.family = ? AND u.id = ?", (claims["sid"], int(claims["sub"])))
        if row is None or row["s_revoked"] is not None or row["disabled"] or row["s_expires"] <= time.time():
            return None
        return Principal(_user(row), session=claims["sid"])

    def _by_key(self, key: str) -> Principal | None:
        row = self.db.one("SELECT k.id AS key_id, k.revoked_at, u.* FROM api_keys k JOIN users u ON u.id = k.user_id "
                          "WHERE k.key_hash = ?", (_sha256(key),))
        if row is None or row["revoked_at"] is not None or row["disabled"]:
            return None
        self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (time.time(), row["key_id"]))
        return Principal(_user(row), key_id=row["key_id"])

    # -- API keys -----------------------------------------------------------------------------

    def create_key(self, user: User, name: str) -> dict[str, Any]:
        name = (name or "").strip() or "key"
        if len(name) > 100:
            raise AuthError(400, "A key's name has at most 100 characters.", "invalid_value", param="name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        now = time.time()
        self.db.execute("INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (key_id, user.id, name, key[:10], _sha256(key), now))
        return {**self._key(self.db.one("SELECT * FROM api_keys WHERE id = ?", (key_id,))), "key": key}

    @staticmethod
    def _key(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "object": "api_key", "name": row["name"], "prefix": row["prefix"], "user_id": row["user_id"],
                "created_at": int(row["created_at"]),
                "last_used_at": int(row["last_used_at"]) if row["last_used_at"] else None,
                "revoked": row["revoked_at"] is not None}

    def keys(self, user_id: int | None = None) -> list[dict[str, Any]]:
        if user_id is None:
            rows = self.db.all("SELECT * FROM api_keys ORDER BY created_at")
        else:
            rows = self.db.all("SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at", (user_id,))
        return [self._key(r) for r in rows]

    def revoke_key(self, key_id: str, user_id: int | None) -> dict[str, Any]:
        """Revoke one key; ``user_id`` None is an admin acting on anyone's key. Another user's key
        answers 404 like a missing one (no way to probe which ids exist)."""
        row = self.db.one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise AuthError(404, f"No API key '{key_id}'.", "key_not_found", param="key_id")
        self.db.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (time.time(), key_id))
        return self._key(self.db.one("SELECT * FROM api_keys WHERE id = ?", (key_id,)))
