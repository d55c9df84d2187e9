"""How a speech request runs on an engine, whichever route it came by: admission and the engine's
worker thread (``scheduler``), the gate that holds requests while the engine is parked
(``parking``), engine audio to encoded bytes chunk by chunk (``pipeline``), and one request as the
surfaces without an HTTP body run it (``speech_job``: WebSocket, RealtimeTTS)."""
