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
    # 1: on exit also remove the model containers this instance created (compose: `down` leaves nothing);
    # implies stop_on_exit. Default 0 keeps stopped containers for a cheap next `docker start`.
    remove_on_exit: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_REMOVE_ON_EXIT", "0") in ("1", "true", "yes"))
    max_body_bytes: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_MAX_BODY_BYTES", str(32 * 1024 * 1024))))
    log_level: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_LOG_LEVEL", "info"))
    # GPU memory the models may hold at once (sum of their vram_mb); 0: no admission control
    vram_budget_mb: int = field(default_factory=lambda: int(_env("VOXGATE_MANAGER_VRAM_BUDGET_MB", "0")))
    tick_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_TICK_S", "0.25")))
    # -- fallback, cache, quotas (voxgate_manager/routing, cache, usage) -------------------------
    # folder for the response cache and the usage database; empty: no cache, usage kept in memory
    data_dir: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_DATA_DIR", ""))
    cache_enabled: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_CACHE", "1") in ("1", "true", "yes"))
    cache_max_mb: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_CACHE_MAX_MB", "1024")))
    cache_ttl_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_CACHE_TTL_S", str(30 * 86400))))
    quotas_file: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_QUOTAS_FILE", ""))
    # the feature flag: 0 answers every speech request 503 (the admin API can flip it at run time)
    speech_enabled: bool = field(default_factory=lambda: _env("VOXGATE_MANAGER_SPEECH_ENABLED", "1") in ("1", "true", "yes"))
    # -- LAN clients (Wyoming for Home Assistant, the key-free catalog for Open WebUI) ------------
    # Wyoming has no authentication: it binds to loopback unless told otherwise; port 0 turns it off
    wyoming_host: str = field(default_factory=lambda: _env("VOXGATE_WYOMING_HOST", "127.0.0.1"))
    wyoming_port: int = field(default_factory=lambda: int(_env("VOXGATE_WYOMING_PORT", "10200")))
    # who may connect (comma-separated addresses or networks, e.g. Home Assistant's); empty: anyone
    wyoming_allow: str = field(default_factory=lambda: _env("VOXGATE_WYOMING_ALLOW", ""))
    wyoming_zeroconf: bool = field(default_factory=lambda: _env("VOXGATE_WYOMING_ZEROCONF", "0") in ("1", "true", "yes"))
    wyoming_zeroconf_name: str = field(default_factory=lambda: _env("VOXGATE_WYOMING_ZEROCONF_NAME", ""))
    # the address announced; default: the Wyoming bind address, or the host's LAN address when it is 0.0.0.0
    wyoming_zeroconf_host: str = field(default_factory=lambda: _env("VOXGATE_WYOMING_ZEROCONF_HOST", ""))
    # GET /v1/models, /v1/audio/models and /v1/audio/voices without a key (Open WebUI sends none)
    public_catalog: bool = field(default_factory=lambda: _env("VOXGATE_PUBLIC_CATALOG", "0") in ("1", "true", "yes"))
    # where what each model reported (voices, capabilities) is kept across manager restarts; empty: memory only
    catalog_cache: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_CATALOG_CACHE", ""))
    # slowloris bounds: a request head (line + headers) and a request body must arrive within these
    header_timeout_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_HEADER_TIMEOUT_S", "10")))
    body_timeout_s: float = field(default_factory=lambda: float(_env("VOXGATE_MANAGER_BODY_TIMEOUT_S", "60")))

    def listeners(self) -> dict[str, tuple[str, int]]:
        """The manager's own listeners (no model may use their ports)."""
        return {"public": (self.host, self.port), "admin": (self.admin_host, self.admin_port)}

    # -- accounts, application API and studio (docs/studio.md) ----------------------------------
    # where the accounts/jobs database, job results and clips live; empty: VOXGATE_MANAGER_DATA_DIR,
    # else ./data (the response cache stays off until VOXGATE_MANAGER_DATA_DIR is set)
    app_dir: str = field(default_factory=lambda: _env("VOXGATE_MANAGER_APP_DIR", ""))
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

        return self.app_db or os.path.join(self.app_folder(), "app.sqlite3")

    def app_folder(self) -> str:
        return self.app_dir or self.data_dir or "data"
