"""How the manager talks to model servers: the proxy that forwards a request and streams its answer
(``proxy``) on the lean keep-alive client (``h1``), the pooled httpx client for probes, warm-ups and
voice lists (``upstream``), and the TLS trust both use towards ``remote`` models (``tls``)."""
