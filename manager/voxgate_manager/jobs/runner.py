"""Runs long-text jobs chunk by chunk through the manager's request path, recording every step
in SQLite: the job row, each chunk's state and an ordered event log that SSE clients replay.

A manager that stops mid-job (restart, crash) leaves the job ``running`` in the database; the
next manager resumes it at its first unfinished chunk (chunks already made are kept on disk).
A job whose model is gone, or whose chunks keep failing, ends with an ``error`` event that says
why, never silently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from voxgate_manager.accounts.sqlite import Database, migrate
from voxgate_manager.api.speech_path import synthesize
from voxgate_manager.errors import APIError
from voxgate_manager.jobs.chunking import chunk_text
from voxgate_manager.jobs.wav import PCMFormat, WavError, join_wavs, split_wav

log = logging.getLogger("voxgate.manager.jobs")

TERMINAL = ("complete", "error", "cancelled")
TERMINAL_EVENTS = ("complete", "error")
RETRYABLE = (429, 502, 503)


class JobRunner:
    def __init__(self, db: Database, manager: Any, folder: Path, *, chunk_chars: int = 1000, parallel_jobs: int = 1,
                 retry_budget_s: float = 300.0) -> None:
        self.db = db
        self.manager = manager
        self.folder = folder
        self.chunk_chars = chunk_chars
        self.parallel_jobs = parallel_jobs
        self.retry_budget_s = retry_budget_s
        migrate(db, "voxgate_manager.jobs")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._slots: asyncio.Semaphore | None = None
        self._closing = False
        self.shutting_down = False  # set at the first signal: SSE streams end so uvicorn can stop

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Pick up what a previous manager left: queued jobs start, running ones resume."""
        for row in self.db.all("SELECT id, status, chunks_done FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at"):
            if row["status"] == "running":
                self.db.execute("UPDATE jobs SET resumed = resumed + 1, status = 'queued', updated_at = ? WHERE id = ?",
                                (time.time(), row["id"]))
                self._emit(row["id"], "progress", {**self._progress(row["id"]), "resumed": True})
                log.info(json.dumps({"event": "job_resumed", "job": row["id"], "chunks_done": row["chunks_done"]}))
            self._schedule(row["id"])

    async def close(self) -> None:
        """Stop working; unfinished jobs stay as they are in the database for the next start."""
        self._closing = True
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- public operations --------------------------------------------------------------------

    def create(self, user_id: int, model: str, voice: str, speed: float, text: str) -> dict[str, Any]:
        chunks = chunk_text(text, self.chunk_chars)
        if not chunks:
            raise APIError(400, "The text has nothing to read aloud.", param="text", code="invalid_value")
        job_id = "job_" + secrets.token_hex(8)
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO jobs (id, user_id, model, voice, speed, format, status, chars_total, chunks_total, "
                         "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'wav', 'queued', ?, ?, ?, ?)",
                         (job_id, user_id, model, voice, speed, len(text), len(chunks), now, now))
            conn.executemany("INSERT INTO job_chunks (job_id, idx, text) VALUES (?, ?, ?)",
                             [(job_id, i, c) for i, c in enumerate(chunks)])
        self._emit(job_id, "progress", self._progress(job_id))
        self._schedule(job_id)
        return self.get(job_id, user_id)  # type: ignore[return-value]

    def get(self, job_id: str, user_id: int | None) -> dict[str, Any] | None:
        """The job as the API shows it; ``user_id`` None: any owner (admin)."""
        row = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None or (user_id is not None and row["user_id"] != user_id):
            return None
        return self._public(row)

    def list(self, user_id: int, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC LIMIT ?", (user_id, limit))
        return [self._public(r) for r in rows]

    def result_path(self, job_id: str) -> Path:
        return self.folder / job_id / "result.wav"

    def cancel(self, job_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT status FROM jobs WHERE id = ?", (job_id,))
        if row is not None and row["status"] not in TERMINAL:
            self._finish(job_id, "cancelled", code="cancelled", message="The job was cancelled.")
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
        return self.get(job_id, None)  # type: ignore[return-value]

    def events_after(self, job_id: str, seq: int) -> list[dict[str, Any]]:
        return [{"seq": r["seq"], "event": r["event"], "data": r["data"]}
                for r in self.db.all("SELECT seq, event, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                                     (job_id, seq))]

    def begin_shutdown(self) -> None:
        """Wake every SSE stream so it ends (clients reconnect to the next manager with Last-Event-ID)."""
        self.shutting_down = True
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    def change_waiter(self, job_id: str) -> asyncio.Event:
        """Taken before reading events, so none emitted in between is missed."""
        return self._changed.setdefault(job_id, asyncio.Event())

    # -- internals ----------------------------------------------------------------------------

    def _public(self, row: Any) -> dict[str, Any]:
        done, total = row["chunks_done"], row["chunks_total"]
        out = {"id": row["id"], "object": "tts.job", "status": row["status"], "model_id": row["model"], "voice": row["voice"],
               "speed": row["speed"], "format": row["format"], "chars_total": row["chars_total"], "chunks_total": total,
               "chunks_done": done, "percent": round(100.0 * done / total, 1) if total else 0.0,
               "audio_seconds": round(row["audio_seconds"], 3), "resumed": row["resumed"],
               "created_at": int(row["created_at"]), "finished_at": int(row["finished_at"]) if row["finished_at"] else None,
               "error": ({"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None),
               "events_url": f"/api/tts/jobs/{row['id']}/events"}
        if row["status"] == "complete":
            out["result_url"] = f"/api/tts/jobs/{row['id']}/audio"
            out["result_bytes"] = row["result_bytes"]
        return out

    def _progress(self, job_id: str) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        chars_done = self.db.one("SELECT COALESCE(SUM(LENGTH(text)), 0) AS n FROM job_chunks WHERE job_id = ? AND done = 1",
                                 (job_id,))["n"]
        total = row["chunks_total"]
        return {"status": row["status"], "chunks_done": row["chunks_done"], "chunks_total": total,
                "percent": round(100.0 * row["chunks_done"] / total, 1) if total else 0.0,
                "chars_done": chars_done, "chars_total": row["chars_total"], "audio_seconds": round(row["audio_seconds"], 3)}

    def _emit(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?", (job_id,)).fetchone()[0]
            conn.execute("INSERT INTO job_events (job_id, seq, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
                         (job_id, seq, event, json.dumps({"job_id": job_id, **data}), time.time()))
        waiter = self._changed.pop(job_id, None)
        if waiter is not None:
            waiter.set()

    def _finish(self, job_id: str, status: str, *, code: str | None = None, message: str | None = None) -> None:
        now = time.time()
        self.db.execute("UPDATE jobs SET status = ?, error_code = ?, error_message = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                        (status, code, message, now, now, job_id))
        if status == "complete":
            row = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
            self._emit(job_id, "complete", {"status": status, "result_url": f"/api/tts/jobs/{job_id}/audio",
                                            "result_bytes": row["result_bytes"], "audio_seconds": round(row["audio_seconds"], 3),
                                            "chunks_total": row["chunks_total"]})
        else:
            self._emit(job_id, "error", {"status": status, "code": code, "message": message})

    def _schedule(self, job_id: str) -> None:
        if self._closing or job_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._run(job_id), name=f"job {job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.parallel_jobs)
        async with self._slots:
            try:
                await self._work(job_id)
            except asyncio.CancelledError:
                raise
            except APIError as exc:
                self._finish(job_id, "error", code=exc.code or "synthesis_failed", message=exc.message)
            except Exception as exc:  # noqa: BLE001 - a job must end with a reason, never hang
                log.exception("job %s failed", job_id)
                self._finish(job_id, "error", code="internal_error", message=f"The job failed: {exc}")

    async def _work(self, job_id: str) -> None:
        job = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if job is None or job["status"] in TERMINAL:
            return
        folder = self.folder / job_id
        folder.mkdir(parents=True, exist_ok=True)
        # a chunk marked done whose file is gone (disk cleaned) is made again
        for c in self.db.all("SELECT idx FROM job_chunks WHERE job_id = ? AND done = 1", (job_id,)):
            if not (folder / f"{c['idx']:05d}.wav").exists():
                self.db.execute("UPDATE job_chunks SET done = 0 WHERE job_id = ? AND idx = ?", (job_id, c["idx"]))
        self._recount(job_id)
        self.db.execute("UPDATE jobs SET status = 'running', updated_at = ? WHERE id = ?", (time.time(), job_id))
        fmt0: PCMFormat | None = None
        for chunk in self.db.all("SELECT idx, text FROM job_chunks WHERE job_id = ? AND done = 0 ORDER BY idx", (job_id,)):
            ctl = self.manager.resolve(job["model"])
            if ctl is None:
                raise APIError(404, f"The model '{job['model']}' is no longer configured; the job cannot finish.",
                               code="model_not_found")
            data = await self._synthesize_chunk(ctl, job, chunk["text"])
            try:
                fmt, pcm = split_wav(data)
            except WavError as exc:
                raise APIError(502, f"model {ctl.id!r} sent audio the job cannot join: {exc}", code="bad_audio") from None
            fmt0 = fmt0 or fmt
            seconds = len(pcm) / fmt.bytes_per_second
            path = folder / f"{chunk['idx']:05d}.wav"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            if self.db.one("SELECT status FROM jobs WHERE id = ?", (job_id,))["status"] in TERMINAL:
                return  # cancelled while this chunk was made
            with self.db.transaction() as conn:
                conn.execute("UPDATE job_chunks SET done = 1, audio_seconds = ? WHERE job_id = ? AND idx = ?",
                             (seconds, job_id, chunk["idx"]))
                conn.execute("UPDATE jobs SET chunks_done = chunks_done + 1, audio_seconds = audio_seconds + ?, updated_at = ? "
                             "WHERE id = ?", (seconds, time.time(), job_id))
            self._emit(job_id, "chunk-progress", {"chunk": chunk["idx"], "chunks_total": job["chunks_total"],
                                                  "chars": len(chunk["text"]), "audio_seconds": round(seconds, 3)})
            self._emit(job_id, "progress", self._progress(job_id))
        parts = sorted(folder.glob("[0-9]*.wav"))
        size, seconds = await asyncio.to_thread(join_wavs, parts, self.result_path(job_id))
        self.db.execute("UPDATE jobs SET result_bytes = ?, audio_seconds = ? WHERE id = ?", (size, seconds, job_id))
        for p in parts:
            p.unlink(missing_ok=True)
        self._finish(job_id, "complete")

    def _recount(self, job_id: str) -> None:
        self.db.execute("UPDATE jobs SET chunks_done = (SELECT COUNT(*) FROM job_chunks WHERE job_id = ? AND done = 1), "
                        "audio_seconds = (SELECT COALESCE(SUM(audio_seconds), 0) FROM job_chunks WHERE job_id = ? AND done = 1) "
                        "WHERE id = ?", (job_id, job_id, job_id))

    async def _synthesize_chunk(self, ctl: Any, job: Any, text: str) -> bytes:
        """One chunk. A model that is starting, restarting, busy or briefly unreachable (429, 502,
        503) is waited for, backing off, for at most ``retry_budget_s``; other errors end the job."""
        payload = {"input": text, "voice": job["voice"], "speed": job["speed"], "response_format": "wav"}
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                return await synthesize(self.manager, ctl, payload, job["user_id"])
            except APIError as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                attempt += 1
                if exc.status not in RETRYABLE or now - first_failure >= self.retry_budget_s:
                    raise
                if exc.code == "quota_exceeded" and float(exc.headers.get("Retry-After", "0") or 0) > self.retry_budget_s:
                    raise  # the user's limit resets long after the job would have given up: say so now
                wait = min(float(exc.headers.get("Retry-After", "1") or 1), 2.0 ** min(attempt, 4))
                log.info(json.dumps({"event": "job_chunk_retry", "job": job["id"], "attempt": attempt, "status": exc.status,
                                     "message": exc.message, "wait_s": wait}))
                await asyncio.sleep(wait)

    def delete_files(self, job_id: str) -> None:
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
