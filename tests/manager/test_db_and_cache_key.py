"""db.py's migrations runner and the cache key's normalisation (no servers)."""

from __future__ import annotations

from voxgate_manager import db
from voxgate_manager.cache.key import cache_key


def test_migrations_apply_once_per_component_and_in_order(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "001_first.sql").write_text("-- the first table\nCREATE TABLE t1 (x INTEGER);\nINSERT INTO t1 VALUES (1);\n")
    (a / "002_second.sql").write_text("ALTER TABLE t1 ADD COLUMN y TEXT; CREATE TABLE t2 (z TEXT);")
    (a / "notes.txt").write_text("not a migration")
    b = tmp_path / "b"
    b.mkdir()
    (b / "001_first.sql").write_text("CREATE TABLE other (x INTEGER);")
    conn = db.connect(tmp_path / "x.sqlite3")
    assert db.migrate(conn, "a", a) == ["001_first.sql", "002_second.sql"]
    assert db.migrate(conn, "b", b) == ["001_first.sql"]  # same number, another component
    assert db.migrate(conn, "a", a) == []
    conn.close()
    conn = db.connect(tmp_path / "x.sqlite3")  # the record survives a new connection
    assert db.migrate(conn, "a", a) == []
    assert conn.execute("SELECT x, y FROM t1").fetchall()[0][0] == 1
    (a / "003_bad.sql").write_text("CREATE TABLE t3 (a INTEGER); CREATE TABLE t1 (dup INTEGER);")
    try:
        db.migrate(conn, "a", a)
        raise AssertionError("a broken migration must raise")
    except Exception as exc:  # sqlite3.OperationalError
        assert "t1" in str(exc)
    # rolled back whole: neither its first statement nor its record remain
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't3'").fetchone() is None
    assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations WHERE component = 'a' ORDER BY version")] == [
        "001_first.sql", "002_second.sql"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_key_is_stable_and_covers_what_changes_the_audio():
    base = {"model": "tts-1", "input": "Hello.", "voice": "alloy"}
    k = cache_key("piper", base)
    assert k == cache_key("piper", {**base, "model": "an alias", "response_format": "mp3", "speed": 1, "user": "u1"})
    assert k == cache_key("piper", {**base, "voice": {"id": "alloy"}})
    others = [cache_key("kokoro", base), cache_key("piper", {**base, "input": "Hello!"}),
              cache_key("piper", {**base, "voice": "echo"}), cache_key("piper", {**base, "response_format": "wav"}),
              cache_key("piper", {**base, "speed": 1.25}), cache_key("piper", {**base, "seed": 1}),
              cache_key("piper", {**base, "instructions": "whisper"}), cache_key("piper", {**base, "stream_format": "sse"}),
              cache_key("piper", base, voice_hash="abc")]
    assert len({k, *others}) == len(others) + 1
