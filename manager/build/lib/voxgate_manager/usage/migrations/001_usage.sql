-- speech usage per API key, model and UTC day (months are sums of days)
CREATE TABLE usage_daily (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    chars INTEGER NOT NULL DEFAULT 0,
    audio_s REAL NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    cache_hits INTEGER NOT NULL DEFAULT 0,
    fallbacks INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, day)
);
CREATE INDEX usage_daily_day ON usage_daily (day);
