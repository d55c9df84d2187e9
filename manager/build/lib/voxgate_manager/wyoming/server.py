"""The Wyoming listener and its zeroconf announcement (``_wyoming._tcp``, how Home Assistant
discovers a Piper add-on). Wyoming has no authentication, so the listener binds to loopback unless
``VOXGATE_WYOMING_HOST`` says otherwise; a port already in use is reported and the HTTP API keeps
serving (Home Assistant is one client among several)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING

from wyoming.error import Error
from wyoming.event import async_write_event

from voxgate_manager.wyoming.handler import WyomingHandler

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from voxgate_manager.manager import Manager

log = logging.getLogger("voxgate.manager.wyoming")

SERVICE_TYPE = "_wyoming._tcp.local."
REFUSED_LINGER_S = 2.0


def service_info(name: str, host: str, port: int) -> "AsyncServiceInfo":
    """The mDNS record Home Assistant's zeroconf discovery matches (type ``_wyoming._tcp``)."""
    from zeroconf.asyncio import AsyncServiceInfo

    return AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", addresses=[socket.inet_aton(host)], port=port,
                            server=f"{name}.local.")


def announce_address(bind_host: str, configured: str = "") -> str:
    """The IPv4 address to announce: the configured one, else the bind address, else (bound to all
    interfaces) the address this host reaches the mDNS group from."""
    if configured:
        return configured
    if bind_host not in ("", "0.0.0.0", "::"):
        return socket.gethostbyname(bind_host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("224.0.0.251", 5353))  # no packet is sent: this only picks the outgoing interface
        return s.getsockname()[0]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(value: str) -> list[Network]:
    """``VOXGATE_WYOMING_ALLOW``: addresses or networks, comma-separated (ValueError names a bad one)."""
    nets: list[Network] = []
    for part in (p.strip() for p in value.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"VOXGATE_WYOMING_ALLOW: {part!r} is not an IP address or network") from None
    return nets


def allowed(peer: str, nets: list[Network]) -> bool:
    if not nets:
        return True
    try:
        addr = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in n for n in nets)


def default_name() -> str:
    return "voxgate-" + socket.gethostname().split(".")[0]


class WyomingServer:
    def __init__(self, manager: "Manager", host: str, port: int, allow: list[Network] | None = None) -> None:
        self.manager = manager
        self.host, self.port = host, port
        self.allow = allow or []
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._handlers: set[WyomingHandler] = set()
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    async def start(self) -> bool:
        try:
            self._server = await asyncio.start_server(self._client, self.host, self.port)
        except OSError as exc:
            log.error("Wyoming (Home Assistant) not served: cannot listen on %s:%s: %s", self.host, self.port, exc.strerror or exc)
            return False
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Wyoming (Home Assistant) on tcp://%s:%s", self.host, self.port)
        return True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            peer = (writer.get_extra_info("peername") or ("",))[0]
            if not allowed(str(peer), self.allow):
                log.warning("Wyoming connection from %s refused (not in VOXGATE_WYOMING_ALLOW)", peer)
                await async_write_event(Error(text=f"{peer} may not use this Wyoming server (VOXGATE_WYOMING_ALLOW)",
                                              code="forbidden").event(), writer)
                # read what the client sends until it hangs up (at most REFUSED_LINGER_S): closing with
                # its request unread would reset the connection and could lose the error event
                with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                    async with asyncio.timeout(REFUSED_LINGER_S):
                        while await reader.read(65536):
                            pass
                return
            handler = WyomingHandler(self.manager, reader, writer)
            self._handlers.add(handler)
            try:
                await handler.run()
            finally:
                self._handlers.discard(handler)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("Wyoming connection failed")
        finally:
            self._clients.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def announce(self, name: str, address: str) -> None:
        """Register ``name._wyoming._tcp.local.`` on the interface of ``address``."""
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        self._info = service_info(name, address, self.port)
        self._zc = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        await self._zc.async_register_service(self._info)
        log.info("zeroconf: announced %s at %s:%s", self._info.name, address, self.port)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening, let speech in progress finish (at most ``grace_s``, as uvicorn's graceful
        shutdown for HTTP), then hang up on everyone."""
        if self._server is not None:
            self._server.close()
        deadline = asyncio.get_running_loop().time() + grace_s
        while any(h.busy() for h in self._handlers) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self._zc is not None:
            with contextlib.suppress(Exception):
                if self._info is not None:
                    await self._zc.async_unregister_service(self._info)
                await self._zc.async_close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


async def serve_wyoming(manager: "Manager") -> WyomingServer | None:
    """Start the listener (and the announcement) the settings ask for; None when off or not bound."""
    s = manager.settings
    if not s.wyoming_port:
        return None
    try:
        allow = parse_allow(s.wyoming_allow)
    except ValueError as exc:
        log.error("Wyoming (Home Assistant) not served: %s", exc)
        return None
    server = WyomingServer(manager, s.wyoming_host, s.wyoming_port, allow)
    if not await server.start():
        return None
    manager.wyoming_address = f"{server.host}:{server.port}"  # type: ignore[attr-defined]  (for /health)
    if s.wyoming_zeroconf:
        try:
            await server.announce(s.wyoming_zeroconf_name or default_name(), announce_address(s.wyoming_host, s.wyoming_zeroconf_host))
        except Exception as exc:  # no multicast-capable interface: discovery off, host:port still works
            log.warning("zeroconf announcement failed (add the server in Home Assistant by host and port): %s", exc)
    return server
