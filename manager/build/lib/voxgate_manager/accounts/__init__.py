"""Users, passwords, access and refresh tokens, per-user API keys, and the auth rate limits.

Kept apart from HTTP: ``service.Accounts`` is what the routes in ``api/`` call."""
