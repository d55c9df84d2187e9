"""The manager's own listeners: sockets bound before anything starts (``listeners``) and the public
listener's HTTP protocol (``http_guard``: a bound on the request head, OpenAI's envelope on malformed
HTTP)."""
