"""The small interface every runtime (docker, process, remote) implements for the controller."""

from __future__ import annotations

import errno
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


class StartError(Exception):
    """A start that cannot succeed as configured (port/name conflict, missing image, bad command)."""


@dataclass(frozen=True)
class ExitInfo:
    reason: Literal["exit", "oom", "health", "external"]  # external: stopped by hand (docker stop/kill)
    exit_code: int | None
    message: str


ExitCallback = Callable[[ExitInfo], None]
Discovery = Literal["absent", "stopped", "running"]


class Runtime(ABC):
    """Launches and stops one model's server; reports an unexpected exit through ``on_exit``."""

    kind: str = "runtime"
    base_url: str
    adoptable: bool = False  # survives a manager restart (docker) and can be adopted

    def __init__(self) -> None:
        self.on_exit: ExitCallback = lambda info: None

    async def discover(self) -> Discovery:
        """What is already there at manager start-up."""
        return "absent"

    @abstractmethod
    async def start(self) -> None:
        """Launch (create if needed); returns once launched, not once ready."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop gracefully, then kill after the runtime's stop timeout. Idempotent."""

    async def close(self) -> None:
        """The manager exits: release resources (a docker container is left running)."""

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "base_url": self.base_url}


def check_port_free(host: str, port: int, owner: str) -> None:
    """Fail early, naming the port, instead of letting a stranger answer our readiness probes."""
    bind_host = "0.0.0.0" if host in ("", "0.0.0.0") else host
    fam = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind_host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartError(f"port {port} on {bind_host} is already in use ({owner} needs it)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartError(f"address {bind_host} is not available on this host ({owner})") from None
            raise StartError(f"cannot bind {bind_host}:{port} for {owner}: {exc.strerror}") from None


def url_host(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
