"""Listeners: one asyncio server per endpoint, TLS unless configured plain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

from sealmq.adapters.base import SessionFactory
from sealmq.net.driver import StreamDriver

__all__ = ["Listener", "Listeners"]

log = logging.getLogger("sealmq.net")

#: Pending connections the kernel queues per listener (ActiveMQ's default backlog is 100;
#: higher absorbs reconnect storms after a restart).
BACKLOG = 512
#: How long a TLS handshake may take before the connection is dropped.
SSL_HANDSHAKE_TIMEOUT = 10.0


@dataclass(slots=True)
class Listener:
    name: str
    host: str
    port: int
    tls: bool
    server: asyncio.Server

    @property
    def url(self) -> str:
        scheme = "ssl" if self.tls else "tcp"
        return f"{self.name}+{scheme}://{self.host}:{self.port}"


class Listeners:
    """Every listener of the broker and every connection they accepted."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.drivers: set[StreamDriver] = set()

    async def start(
        self,
        name: str,
        host: str,
        port: int,
        factory: SessionFactory,
        ssl_context: ssl.SSLContext | None,
    ) -> Listener:
        """Bind and start accepting; port 0 picks a free port (see ``Listener.port``)."""
        loop = asyncio.get_running_loop()

        def protocol() -> StreamDriver:
            driver = StreamDriver(factory(), self.drivers.discard)
            self.drivers.add(driver)
            return driver

        server = await loop.create_server(
            protocol,
            host,
            port,
            ssl=ssl_context,
            backlog=BACKLOG,
            reuse_address=True,
            ssl_handshake_timeout=SSL_HANDSHAKE_TIMEOUT if ssl_context is not None else None,
        )
        bound = server.sockets[0].getsockname()[1]
        listener = Listener(name, host, bound, ssl_context is not None, server)
        self.listeners.append(listener)
        return listener

    def stop_accepting(self) -> None:
        for listener in self.listeners:
            listener.server.close()

    def shutdown_sessions(self, reason: str) -> None:
        """Tell every connected client why, and close its connection."""
        for driver in list(self.drivers):
            driver.session.shutdown(reason)

    async def close(self, reason: str = "The broker is shutting down") -> None:
        self.stop_accepting()
        self.shutdown_sessions(reason)
        for listener in self.listeners:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.server.wait_closed(), 5)
        for driver in list(self.drivers):
            driver.abort()
        self.listeners.clear()
