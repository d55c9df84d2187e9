"""The manager's own HTTP surfaces: the catalog it answers itself (no model server involved), the
application API (``/api/auth/*``, ``/api/keys``, ``/api/admin/*``, ``/api/tts/*``) used by the studio
and other apps, the admin API on its own listener (``admin``), the speech WebSocket through the
manager (``ws_proxy``), and the client mistakes answered before any model is asked
(``request_checks``)."""
