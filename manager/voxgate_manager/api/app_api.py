"""The application API's services and routes, installed on the manager's public FastAPI app.

``AppServices`` owns the SQLite database (accounts, jobs, clips), the auth rate limits and the
job runner; routes reach it as ``request.app.state.app_services``."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI

from voxgate_manager.accounts.ratelimit import Lockout, SlidingWindow
from voxgate_manager.accounts.service import Accounts
from voxgate_manager.accounts.sqlite import Database
from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.app_api")


class AppServices:
    def __init__(self, manager: Manager) -> None:
        from voxgate_manager.jobs.runner import JobRunner
        from voxgate_manager.jobs.clips import ClipStore

        s = manager.settings
        self.settings = s
        self.manager = manager
        self.data_dir = Path(s.app_folder())
        self.db = Database(s.app_db_path())
        self.accounts = Accounts(self.db, access_ttl_s=s.access_token_ttl_s, session_ttl_s=s.session_ttl_s,
                                 secret=s.jwt_secret)
        self.ip_window = SlidingWindow(s.auth_rate_per_min, 60.0)
        self.lockout = Lockout(s.login_lockout_after, s.login_lockout_s, s.login_lockout_max_s)
        self.clips = ClipStore(self.db, self.data_dir / "clips")
        self.jobs = JobRunner(self.db, manager, self.data_dir / "jobs", chunk_chars=s.job_chunk_chars)

    def verify_openai_token(self, token: str) -> bool:
        """For /v1/*: a per-user API key always; a user's access token only if the setting allows."""
        principal = self.accounts.principal(token)
        if principal is None:
            return False
        return principal.key_id is not None or self.settings.openai_accept_user_tokens

    async def start(self) -> None:
        """Resume the jobs a previous manager left unfinished."""
        await self.jobs.start()

    def begin_shutdown(self) -> None:
        """At the first SIGINT/SIGTERM: end the SSE streams, which would hold uvicorn's shutdown."""
        self.jobs.begin_shutdown()

    async def close(self) -> None:
        await self.jobs.close()
        self.db.close()


def install_app_api(app: FastAPI, manager: Manager) -> AppServices:
    from voxgate_manager.api import auth_routes, tts_routes, usage_routes
    from voxgate_manager.studio import routes as studio_routes

    services = AppServices(manager)
    app.state.app_services = services
    app.include_router(auth_routes.router)
    app.include_router(tts_routes.router)
    app.include_router(usage_routes.router)
    app.include_router(studio_routes.router)
    return services
