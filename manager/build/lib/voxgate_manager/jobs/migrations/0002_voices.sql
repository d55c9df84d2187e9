-- Who uploaded which voice through the studio (the clip itself lives in the model server's library).
CREATE TABLE voice_owners (
    model TEXT NOT NULL,
    voice_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    seconds REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (model, voice_id)
);
