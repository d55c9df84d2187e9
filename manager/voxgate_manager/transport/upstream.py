"""The pooled httpx client the manager uses towards model servers for everything but proxied work:
readiness probes, warm-ups, voice lists. Proxied requests (speech, voice uploads) take the lean
client in h1.py, where the per-request cost matters."""

from __future__ import annotations

import httpx

from voxgate_manager.transport.tls import client_context


def make_upstream_client() -> httpx.AsyncClient:
    # no read timeout: a long warm-up is not an error; trust_env off: model servers are local or
    # on the LAN and must not be sent through an HTTP(S)_PROXY meant for the internet
    transport = httpx.AsyncHTTPTransport(trust_env=False, verify=client_context(), limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
    return httpx.AsyncClient(transport=transport, trust_env=False,
                             timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=None))
