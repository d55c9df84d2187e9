-- Long-text jobs: one row per job, its chunks, and its event log (what SSE replays, in order).
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    model TEXT NOT NULL,
    voice TEXT NOT NULL,
    speed REAL NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'complete', 'error', 'cancelled')),
    chars_total INTEGER NOT NULL,
    chunks_total INTEGER NOT NULL,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    audio_seconds REAL NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE job_chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    audio_seconds REAL,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- The studio's history: clips a user generated, kept on disk (newest 50 per user).
CREATE TABLE clips (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    model TEXT NOT NULL,
    voice TEXT NOT NULL,
    format TEXT NOT NULL,
    text TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX clips_user ON clips (user_id, created_at);
