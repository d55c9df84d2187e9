"""What the manager knows of each model without asking it: its voices and capabilities.

Open WebUI lists voices and models with GETs it sends without a key, Home Assistant asks a Wyoming
server to ``describe`` itself on every connection, and OpenAI clients look ``tts-1`` up in
``/v1/models``. None of them may start a GPU container just to get a list, so these answers come
from here: what the model's server reported the last time it was ready (fetched right after each
start, and every ``REFRESH_S`` while it stays ready, never counted as work), else what models.json
declares. With ``VOXGATE_MANAGER_CATALOG_CACHE`` set, the reports survive a manager restart.

A cloned voice's entry carries ``sha256``, its clip's content hash as the server computed it; the
response cache puts it in the key (``voice_hash``), so a clip replaced on the server, even behind
the manager's back, is a new key as soon as a refresh has seen the new list, and the answers under
the old hash are purged then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from voxgate_manager.lifecycle.machine import State

if TYPE_CHECKING:
    from voxgate_manager.lifecycle.controller import ModelController
    from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.catalog")

POLL_S = 0.5  # how often states are looked at for a model that just became ready
REFRESH_S = 60.0  # re-read a ready model's lists this often (voices may be added at run time)


class Catalog:
    def __init__(self, manager: "Manager", cache_path: str | None = None) -> None:
        self.manager = manager
        self.cache_path = Path(cache_path) if cache_path else None
        self.reports: dict[str, dict[str, Any]] = {}  # model id -> {"voices", "capabilities", "seen_at"}
        self._seen_ready: dict[str, float] = {}  # model id -> monotonic time of the last refresh while ready
        self._task: asyncio.Task[None] | None = None
        self._load()

    # -- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        if self.cache_path is None or not self.cache_path.exists():
            return
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self.reports = {k: v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError) as exc:
            log.warning("catalog cache %s unreadable (%s); starting empty", self.cache_path, exc)

    def _save(self) -> None:
        if self.cache_path is None:
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(self.cache_path.suffix + ".tmp")
            tmp.write_text(json.dumps(self.reports, indent=1), encoding="utf-8")
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            log.warning("catalog cache %s not written: %s", self.cache_path, exc)

    # -- refreshing ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            now = time.monotonic()
            for ctl in list(self.manager.controllers.values()):
                if ctl.state is not State.READY:
                    self._seen_ready.pop(ctl.id, None)
                    continue
                last = self._seen_ready.get(ctl.id)
                if last is None or now - last >= REFRESH_S:
                    self._seen_ready[ctl.id] = now
                    try:
                        await self.refresh(ctl)
                    except Exception as exc:  # a model that answers badly keeps its last report
                        log.debug("catalog refresh of %s failed: %s", ctl.id, exc)

    def stale(self, model: str) -> None:
        """A voice of ``model`` was just changed through the manager: read its list again on the
        next tick (within ``POLL_S`` while it is ready) rather than at the next ``REFRESH_S``."""
        self._seen_ready.pop(model, None)

    async def refresh(self, ctl: "ModelController") -> None:
        """Read the model's voices and capabilities from its server (only while it is ready)."""
        upstream = ctl.spec.upstream_model or ctl.id
        headers = {"Authorization": f"Bearer {ctl.spec.api_key}"} if ctl.spec.api_key else {}
        base = ctl.runtime.base_url
        http = self.manager.http
        report: dict[str, Any] = dict(self.reports.get(ctl.id, {}))
        resp = await http.get(f"{base}/v1/audio/voices", params={"model": upstream}, headers=headers, timeout=10.0)
        if resp.status_code == 200:
            voices = resp.json().get("voices")
            if isinstance(voices, list):
                report["voices"] = [v for v in voices if isinstance(v, dict) and isinstance(v.get("id"), str)]
        resp = await http.get(f"{base}/v1/models/{quote(upstream, safe='')}", headers=headers, timeout=10.0)
        if resp.status_code == 200:
            caps = resp.json().get("capabilities")
            if isinstance(caps, dict):
                report["capabilities"] = caps
        report["seen_at"] = time.time()
        old = self.reports.get(ctl.id, {}).get("voices") or []
        self.reports[ctl.id] = report
        self._save()
        self._clips_changed(ctl.id, old, report.get("voices") or [])

    def _clips_changed(self, model: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        """Purge the cached answers of every voice whose clip hash changed or went away: their keys
        can no longer be asked for, so they only take room."""
        before = {v["id"]: v.get("sha256") for v in old if v.get("sha256")}
        after = {v["id"]: v.get("sha256") for v in new}
        gateway = getattr(self.manager, "gateway", None)
        for vid, digest in before.items():
            if after.get(vid) != digest and gateway is not None:
                log.info("voice %s of %s: its clip changed on the server (%s -> %s)", vid, model, digest[:12],
                         str(after.get(vid))[:12])
                gateway.voices_changed(model, vid)

    # -- answers ------------------------------------------------------------------------------

    def source(self, ctl: "ModelController") -> str:
        """Where the voice list comes from: ``server`` (its last report), ``models.json``, or ``none``."""
        if self.reports.get(ctl.id, {}).get("voices"):
            return "server"
        return "models.json" if ctl.spec.voices else "none"

    def capabilities(self, ctl: "ModelController") -> dict[str, Any] | None:
        caps = self.reports.get(ctl.id, {}).get("capabilities")
        return dict(caps) if isinstance(caps, dict) else None

    def voices(self, ctl: "ModelController") -> list[dict[str, Any]]:
        """The model's voices (the server's report, else the declared ones), then its presets.
        Each entry has ``id``, ``name``, ``model`` and, where known, ``language``; an alias has
        ``alias_of``, a preset ``preset_of``."""
        reported = self.reports.get(ctl.id, {}).get("voices")
        out: list[dict[str, Any]] = []
        if reported:
            for v in reported:
                entry = {k: v[k] for k in ("id", "name", "language", "description", "alias_of", "sha256") if v.get(k) is not None}
                entry.setdefault("name", entry["id"])
                out.append({**entry, "model": ctl.id})
        else:
            for d in ctl.spec.voices:
                entry = {"id": d.id, "name": d.name or d.id, "model": ctl.id}
                if d.language:
                    entry["language"] = d.language
                if d.description:
                    entry["description"] = d.description
                out.append(entry)
        langs = {v["id"]: v.get("language") for v in out}
        for name, preset in ctl.spec.voice_presets.items():
            entry = {"id": name, "name": name, "model": ctl.id, "preset_of": preset.voice}
            lang = preset.language or langs.get(preset.voice)
            if lang:
                entry["language"] = lang
            if preset.description:
                entry["description"] = preset.description
            out.append(entry)
        return out

    def voice_hash(self, ctl: "ModelController", voice: Any) -> str | None:
        """The content hash of the clip behind ``voice`` (a name, ``{"id"}``, or an alias of a cloned
        voice) as the model's server last reported it; None for built-in voices and unknown ones."""
        vid = voice.get("id") if isinstance(voice, dict) else voice
        if not isinstance(vid, str):
            return None
        by_id = {v["id"]: v for v in self.reports.get(ctl.id, {}).get("voices") or []}
        entry = by_id.get(vid)
        if entry is not None and entry.get("alias_of"):
            entry = by_id.get(entry["alias_of"])
        digest = entry.get("sha256") if entry else None
        return digest if isinstance(digest, str) else None

    def voice_ids(self, ctl: "ModelController") -> set[str] | None:
        """Every name a request may use as its voice, or None when nothing is known (then the model's
        server is the judge)."""
        voices = self.voices(ctl)
        if not voices or (self.source(ctl) == "none"):
            return None
        return {v["id"] for v in voices}

    def languages(self, ctl: "ModelController", voice: dict[str, Any]) -> list[str]:
        """A voice's languages: its own, its base voice's, else the model's reported ones."""
        lang = voice.get("language")
        if not lang:
            base = voice.get("alias_of") or voice.get("preset_of")
            for v in self.voices(ctl):
                if v["id"] == base and v.get("language"):
                    lang = v["language"]
                    break
        if lang:
            return [lang]
        caps = self.capabilities(ctl) or {}
        return [x for x in caps.get("languages", []) if isinstance(x, str)]

    def default_voice(self, ctl: "ModelController") -> str:
        """The voice used when a client names none: the model's first own voice, else ``alloy``
        (every voxgate server and OpenAI itself answer to it)."""
        for v in self.voices(ctl):
            if "alias_of" not in v and "preset_of" not in v:
                return v["id"]
        return "alloy"
