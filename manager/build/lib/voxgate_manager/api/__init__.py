"""The manager's own HTTP surfaces: the catalog it answers itself (no model server involved) and the
application API (``/api/auth/*``, ``/api/keys``, ``/api/admin/*``, ``/api/tts/*``) used by the studio and other apps."""
