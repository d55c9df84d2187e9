"""``voxgate-server``: run the speech server with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from voxgate_server.asgi.http_protocol import make_protocol
from voxgate_server.asgi.serve import VoxgateServer
from voxgate_server.engines import preimport
from voxgate_server.engines.gpu import sleep_memory
from voxgate_server.settings import Settings


def main(argv: list[str] | None = None) -> None:
    # before anything else: parking through the allocator needs the process re-executed with it
    sleep_memory.prepare_process(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(prog="voxgate-server", description="OpenAI-compatible speech server")
    parser.add_argument("--host", default=None, help="bind address (default: VOXGATE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: VOXGATE_PORT, PORT or 8000)")
    args = parser.parse_args(argv)
    settings = Settings()
    host = args.host or settings.host
    port = args.port or (settings.port if "VOXGATE_PORT" in os.environ else int(os.environ.get("PORT", settings.port)))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preimport.start(settings.engines)  # torch and chatterbox load while the web stack does
    from voxgate_server.app import create_app

    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        raise SystemExit("voxgate-server: set both VOXGATE_SSL_CERTFILE and VOXGATE_SSL_KEYFILE for HTTPS, or neither")
    app = create_app(settings)
    tls = {"ssl_certfile": str(settings.ssl_certfile), "ssl_keyfile": str(settings.ssl_keyfile)} if settings.ssl_certfile else {}
    # uvicorn cancels what is left after its grace time; the runtime ends its requests before that.
    protocol = make_protocol(settings.header_timeout_s, settings.max_header_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(),
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
                            http=protocol, timeout_keep_alive=settings.keep_alive_s, **tls)
    VoxgateServer(config, app.state.runtime, settings.shutdown_grace_s).run()


if __name__ == "__main__":
    main()
