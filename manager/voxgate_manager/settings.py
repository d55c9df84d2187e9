"""Manager settings from VOXGATE_* environment variables; the CLI flags override them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _keys(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


@dataclass
class ManagerSettings:
    config: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_CONFIG", "models.json"))
    host: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_PORT", "8000")))
    admin_host: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_ADMIN_HOST", "127.0.0.1"))
    admin_port: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_ADMIN_PORT", "8001")))
    # same variable as the server: clients use the same keys whether they reach a server or the manager
    api_keys: list[str] = field(default_factory=lambda: _keys(_env("VOXGATE_API_KEYS", "")))
    admin_key: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_ADMIN_KEY", ""))
    # docker label value: several managers (or test runs) can share one dockerd without touching each other
    instance: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_INSTANCE", "default"))
    stop_on_exit: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_STOP_ON_EXIT", "0") in ("1", "true", "yes"))
    max_body_bytes: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_MAX_BODY_BYTES", str(32 * 1024 * 1024))))
    log_level: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_LOG_LEVEL", "info"))
    # GPU memory the models may hold at once (sum of their vram_mb); 0: no admission control
    vram_budget_mb: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_VRAM_BUDGET_MB", "0")))
    tick_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_TICK_S", "0.25")))

    # -- accounts, application API and studio (docs/studio.md) ----------------------------------
    # where the manager keeps its own files (the accounts/jobs database, job results, clips)
    data_dir: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_DATA_DIR", "data"))
    # the SQLite file of accounts, sessions, API keys, jobs and clips; empty: <data_dir>/app.sqlite3
    app_db: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_APP_DB", ""))
    allow_register: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_ALLOW_REGISTER", "1") in ("1", "true", "yes"))
    access_token_ttl_s: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_ACCESS_TOKEN_TTL_S", "900")))
    # how long a sign-in lasts (the refresh token's absolute lifetime); refreshing does not extend it
    session_ttl_s: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_SESSION_TTL_S", str(30 * 86400))))
    # HS256 signing key for access tokens; empty: one generated and kept in the database
    jwt_secret: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_JWT_SECRET", ""))
    # whether /v1/* also accepts a user's access token (per-user API keys are always accepted)
    openai_accept_user_tokens: bool = field(
        default_factory=lambda: _env("VOXGATE_MANAGER_OPENAI_ACCEPT_USER_TOKENS", "0") in ("1", "true", "yes"))
    # 1: /v1/* needs a key even with VOXGATE_API_KEYS empty (then only per-user keys open it)
    require_key: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_REQUIRE_KEY", "0") in ("1", "true", "yes"))
    cors_origins: list[str] = field(default_factory=lambda: _keys(_env("VOXGATE_MANAGER_CORS_ORIGINS", "")))
    auth_rate_per_min: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_AUTH_RATE_PER_MIN", "30")))
    login_lockout_after: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_LOGIN_LOCKOUT_AFTER", "5")))
    login_lockout_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_LOGIN_LOCKOUT_S", "30")))
    login_lockout_max_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_LOGIN_LOCKOUT_MAX_S", "900")))
    job_max_chars: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_JOB_MAX_CHARS", "100000")))
    job_chunk_chars: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_JOB_CHUNK_CHARS", "1000")))
    generate_max_chars: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_GENERATE_MAX_CHARS", "4096")))

    def app_db_path(self) -> str:
        import os.path

        return self.app_db or os.path.join(self.data_dir, "app.sqlite3")
