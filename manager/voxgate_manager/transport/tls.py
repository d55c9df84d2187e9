"""The TLS trust the manager uses towards model servers (``remote`` models over https).

One context for both of its clients (httpx for probes, h1.py for proxied work): the system's CA
store, plus ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (OpenSSL reads them), so a LAN server
with a certificate from the household's own CA is trusted by pointing ``SSL_CERT_FILE`` at that
CA. httpx alone would use certifi's bundle and, with ``trust_env`` off (no proxies for model
servers), ignore those variables.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_context() -> ssl.SSLContext:
    return ssl.create_default_context()
