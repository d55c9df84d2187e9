"""HTTP surfaces of the manager beyond the proxied OpenAI routes: the application API
(``/api/auth/*``, ``/api/keys``, ``/api/admin/*``, ``/api/tts/*``) used by the studio and other apps."""
