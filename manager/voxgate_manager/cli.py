"""voxgate-manager: serve (default), or talk to a running manager's admin API (status, load, unload, park, wake,
reload)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from typing import Any

from voxgate_manager.settings import ManagerSettings

ADMIN_COMMANDS = ("status", "load", "unload", "park", "wake", "reload", "cache", "usage")
log = logging.getLogger("voxgate.manager")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_parser(s: ManagerSettings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxgate-manager", description="Start speech models on demand, proxy them, stop them when idle.",
                                epilog=f"admin commands: voxgate-manager {{{','.join(ADMIN_COMMANDS)}}} --help")
    p.add_argument("--config", default=s.config, help="models.json (env VOXGATE_MANAGER_CONFIG; default %(default)s)")
    p.add_argument("--host", default=s.host, help="public listener address (env VOXGATE_MANAGER_HOST; default %(default)s)")
    p.add_argument("--port", type=int, default=s.port, help="public listener port (env VOXGATE_MANAGER_PORT; default %(default)s)")
    p.add_argument("--admin-host", default=s.admin_host, help="admin listener address (default %(default)s)")
    p.add_argument("--admin-port", type=int, default=s.admin_port, help="admin listener port; 0 disables it (default %(default)s)")
    p.add_argument("--log-level", default=s.log_level)
    return p


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxgate-manager", description="Talk to a running manager's admin API.")
    p.add_argument("--admin-url", default=None, help="default http://VOXGATE_MANAGER_ADMIN_HOST:VOXGATE_MANAGER_ADMIN_PORT")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="models with state, idle deadline, requests in flight")
    for name, text in (("load", "start a model and wait until it is ready"), ("unload", "drain and stop a model"),
                       ("park", "give a ready model's GPU memory back, its server kept running"),
                       ("wake", "wake a parked model and wait until it is ready")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("model")
    sub.add_parser("reload", help="re-read models.json; restart only the models whose entry changed")
    sp = sub.add_parser("cache", help="the response cache: size, entries; --purge empties it (or one --model's part)")
    sp.add_argument("--purge", action="store_true")
    sp.add_argument("--model", default=None)
    sp = sub.add_parser("usage", help="speech usage and cost per API key and model")
    sp.add_argument("--key", default=None, help="one key's name")
    sp.add_argument("--since", default=None, help="YYYY-MM-DD (UTC)")
    return p


def _print_status(models: list[dict[str, Any]]) -> None:
    rows = [("MODEL", "STATE", "RUNTIME", "IN FLIGHT", "QUEUED", "IDLE IN", "LAST ERROR")]
    for m in models:
        idle = m.get("idle_deadline_s")
        rows.append((m["id"], m["state"], m["runtime"]["type"], str(m["requests_in_flight"]), str(m["queue_depth"]),
                     f"{idle:.0f}s" if idle is not None else "-", (m.get("last_error") or "-")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def admin_main(argv: list[str]) -> int:
    import httpx

    args = _admin_parser().parse_args(argv)
    s = ManagerSettings()
    url = (args.admin_url or f"http://{s.admin_host}:{s.admin_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {s.admin_key}"} if s.admin_key else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=None) as client:
            if args.command == "status":
                r = client.get("/admin/models")
            elif args.command == "reload":
                r = client.post("/admin/reload")
            elif args.command == "cache":
                params = {"model": args.model} if args.model else {}
                r = client.delete("/admin/cache", params=params) if args.purge else client.get("/admin/cache", params=params)
            elif args.command == "usage":
                r = client.get("/admin/usage", params={k: v for k, v in (("key", args.key), ("since", args.since)) if v})
            else:
                r = client.post(f"/admin/models/{args.model}/{args.command}")
    except httpx.HTTPError as exc:
        print(f"voxgate-manager: cannot reach the admin API at {url}: {exc}", file=sys.stderr)
        return 2
    data = r.json()
    if r.status_code >= 400:
        print(f"voxgate-manager: {data.get('error', {}).get('message', r.text)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.command == "status":
        _print_status(data["models"])
    elif args.command == "reload":
        print(", ".join(f"{k}: {', '.join(v) or '-'}" for k, v in data.items()))
    elif args.command in ("cache", "usage"):
        from voxgate_manager.routing.report import print_cache, print_usage

        (print_cache if args.command == "cache" else print_usage)(data)
    else:
        _print_status([data])
    return 0


class _FirstOnly(logging.Filter):
    """Let one record starting with ``prefix`` through: the public and admin servers would each log it."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.seen = prefix, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


async def _serve(args: argparse.Namespace, settings: ManagerSettings) -> int:
    import uvicorn

    from voxgate_manager.api.admin import create_admin_app
    from voxgate_manager.app import create_app
    from voxgate_manager.config import ConfigError, check_listener_ports, load_models
    from voxgate_manager.manager import Manager
    from voxgate_manager.serving.http_guard import guarded_protocol
    from voxgate_manager.serving.listeners import ListenerError, bind
    from voxgate_manager.transport.proxy import QuietAbortFilter

    try:
        models = load_models(args.config)
    except ConfigError as exc:
        print(f"voxgate-manager: {exc}", file=sys.stderr)
        return 2
    settings.config, settings.host, settings.port = args.config, args.host, args.port
    settings.admin_host, settings.admin_port = args.admin_host, args.admin_port
    try:
        check_listener_ports(models, settings.listeners())
    except ConfigError as exc:
        print(f"voxgate-manager: {args.config}: {exc}", file=sys.stderr)
        return 2
    try:  # both listeners first: a port in use fails here, before anything starts or is announced
        public_sock = bind(settings.host, settings.port, "public API", "--port or VOXGATE_MANAGER_PORT")
        admin_sock = (bind(settings.admin_host, settings.admin_port, "admin API",
                           "--admin-port or VOXGATE_MANAGER_ADMIN_PORT (0 turns the admin API off)")
                      if settings.admin_port else None)
    except ListenerError as exc:
        print(f"voxgate-manager: {exc}", file=sys.stderr)
        return 2
    if not settings.api_keys and not _is_loopback(settings.host):
        banner = "!" * 78
        log.warning("%s", banner)
        log.warning("voxgate-manager listens on %s with NO API KEY: anyone on the network can use your GPU.", settings.host)
        log.warning("Set VOXGATE_API_KEYS=key1,key2 or bind to 127.0.0.1.")
        log.warning("%s", banner)
    if not _is_loopback(settings.admin_host) and not settings.admin_key:
        log.warning("the admin API listens on %s with no VOXGATE_MANAGER_ADMIN_KEY: anyone on the network can load/unload models",
                    settings.admin_host)
    manager = Manager(settings, models)
    await manager.start()
    from voxgate_manager.wyoming.server import serve_wyoming

    if settings.wyoming_port and not _is_loopback(settings.wyoming_host) and not settings.wyoming_allow:
        log.warning("Wyoming listens on %s:%s: it has no authentication, so anyone on the network can use it "
                    "(VOXGATE_WYOMING_ALLOW=<Home Assistant's address> limits it)", settings.wyoming_host, settings.wyoming_port)
    wyoming = await serve_wyoming(manager)
    level = args.log_level.lower()
    class _Server(uvicorn.Server):
        """uvicorn re-raises the signal after serve(), which would skip our drain; we handle signals."""

        def capture_signals(self):  # type: ignore[override]
            import contextlib

            return contextlib.nullcontext()

    # access_log off unless it would be shown: uvicorn formats each line's arguments before the level check
    public_app = create_app(manager)
    app_services = public_app.app_services  # type: ignore[attr-defined]
    await app_services.start()  # resumes jobs a previous run left unfinished
    public = _Server(uvicorn.Config(public_app, host=settings.host, port=settings.port, log_level=level,
                                           lifespan="off", timeout_graceful_shutdown=5,
                                           http=guarded_protocol(settings.header_timeout_s),
                                           access_log=level in ("trace", "debug", "info")))
    servers = [public.serve(sockets=[public_sock])]
    admin = None
    if settings.admin_port:

        admin = _Server(uvicorn.Config(create_admin_app(manager), host=settings.admin_host, port=settings.admin_port,
                                            log_level=level, lifespan="off"))

        async def _admin_serve() -> None:
            await admin.serve(sockets=[admin_sock])

        servers.append(_admin_serve())
    logging.getLogger("uvicorn.error").addFilter(QuietAbortFilter())
    logging.getLogger("uvicorn.error").addFilter(_FirstOnly("Started server process"))  # two servers, one process
    import signal

    loop = asyncio.get_running_loop()
    def _on_signal(sig: int, frame: Any = None) -> None:
        app_services.begin_shutdown()  # open SSE streams end, so they do not hold the shutdown
        public.handle_exit(sig, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _on_signal, sig, None)  # a second ^C forces the exit
        except NotImplementedError:  # Windows event loops
            signal.signal(sig, _on_signal)
    log.info("voxgate-manager on http://%s:%s (admin %s), %d model(s) from %s", settings.host, settings.port,
             f"http://{settings.admin_host}:{settings.admin_port}" if admin else "off", len(models.models), args.config)

    async def _public() -> None:
        try:
            await servers[0]
        finally:
            if admin is not None:
                admin.should_exit = True

    try:
        await asyncio.gather(_public(), *servers[1:])
    finally:
        if wyoming is not None:
            await wyoming.close()
        await app_services.close()
        await manager.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ADMIN_COMMANDS:
        return admin_main_wrapper(argv)
    if argv and argv[0] in ("create-admin", "create-user"):
        from voxgate_manager.accounts.cli import main as accounts_main

        return accounts_main(argv)
    if argv and argv[0] == "serve":
        argv = argv[1:]
    settings = ManagerSettings()
    args = _serve_parser(settings).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe is noise
    try:  # uvloop (optional, Linux/macOS): a faster event loop for the proxy hop
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(args, settings))


def admin_main_wrapper(argv: list[str]) -> int:
    """``voxgate-manager status`` etc.: global options may come before or after the command."""
    fixed: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--admin-url":
            fixed += [a, next(it, "")]
        elif a.startswith("--admin-url=") or a == "--json":
            fixed.append(a)
    rest = [a for a in argv if a not in fixed]
    return admin_main(fixed + rest)


if __name__ == "__main__":
    sys.exit(main())
