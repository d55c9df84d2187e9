"""The manager's public app in-process (no model started), on a real SQLite file, for API tests."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from voxgate_manager.app import create_app
from voxgate_manager.config import load_models
from voxgate_manager.manager import Manager
from voxgate_manager.settings import ManagerSettings

MODELS = {"models": [{"id": "piper", "aliases": ["tts-1"], "runtime": {"type": "process", "port": 1,
                      "command": ["{python}", "-c", "pass"]}}]}


@asynccontextmanager
async def app_client(tmp: Path, **settings: Any):
    cfg = tmp / "models.json"
    cfg.write_text(json.dumps(MODELS))
    s = ManagerSettings()
    s.data_dir = str(tmp / "data")
    s.api_keys = []
    for k, v in settings.items():
        setattr(s, k, v)
    manager = Manager(s, load_models(str(cfg)))
    for spec in manager.models.models:  # what Manager.start() does, without its ticker or Docker
        manager.controllers[spec.id] = manager._controller(spec)
    app = create_app(manager)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://manager") as client:
        client.services = app.app_services  # type: ignore[attr-defined]
        try:
            yield client
        finally:
            await app.app_services.close()
            await manager.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, name: str, password: str = "correct horse battery") -> dict[str, Any]:
    r = await client.post("/api/auth/register", json={"username": name, "password": password})
    assert r.status_code == 201, r.text
    return r.json()


def assert_envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


ROOT = Path(__file__).resolve().parents[2]
ROOT_ENV = {"PYTHONPATH": f"{ROOT / 'manager'}:{ROOT / 'tts-inference-server'}"}
