-- the response cache's index: one row per stored answer (the audio is a file under the cache dir)
CREATE TABLE tts_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    voice TEXT NOT NULL,
    format TEXT NOT NULL,
    content_type TEXT NOT NULL,
    path TEXT NOT NULL,
    duration REAL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    expires REAL
);
CREATE INDEX tts_cache_lru ON tts_cache (last_access);
CREATE INDEX tts_cache_model ON tts_cache (model);
