"""Bind the manager's listening sockets before anything is started or announced, so a port in use is
one clear line naming the port and the setting that moves it (not uvicorn's errno after a banner)."""

from __future__ import annotations

import errno
import socket


class ListenerError(Exception):
    """A listener cannot be bound; the message says which and how to move it."""


def bind(host: str, port: int, what: str, setting: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenerError(f"the {what} port {host}:{port} is already in use (another voxgate-manager?); "
                                f"stop what holds it or choose another port with {setting}") from None
        raise ListenerError(f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc} ({setting})") from None
    sock.set_inheritable(False)
    return sock
