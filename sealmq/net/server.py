"""Listeners: one asyncio server per endpoint, TLS unless configured plain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sealmq.adapters.base import SessionFactory
from sealmq.config.settings import WebSocketSettings
from sealmq.net.driver import NO_DEADLINES, Deadlines, StreamDriver
from sealmq.net.memory import TRIM_AFTER_IDLE_SECONDS, release_free_memory

if TYPE_CHECKING:
    # Imported when a wss listener starts: the websockets library costs idle memory.
    from sealmq.net.websocket import WebSocketDriver

__all__ = ["Listener", "Listeners"]

log = logging.getLogger("sealmq.net")

#: Pending connections the kernel queues per listener (ActiveMQ's default backlog is 100;
#: higher absorbs reconnect storms after a restart).
BACKLOG = 512
#: How long a TLS handshake may take before the connection is dropped, when no login
#: deadline is given (with one, the handshake gets that long: it is part of the login).
SSL_HANDSHAKE_TIMEOUT = 10.0


@dataclass(slots=True)
class Listener:
    name: str
    host: str
    port: int
    tls: bool
    #: One server per bound address (a host name may stand for several).
    servers: tuple[asyncio.Server, ...]

    @property
    def url(self) -> str:
        if self.name == "wss":
            return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"
        scheme = "ssl" if self.tls else "tcp"
        return f"{self.name}+{scheme}://{self.host}:{self.port}"


class Listeners:
    """Every listener of the broker and every connection they accepted."""

    def __init__(
        self,
        *,
        write_buffer_high_water: int | None = None,
        max_slow_seconds: float | None = None,
    ) -> None:
        """Connections get these flow-control settings (see :class:`StreamDriver`)."""
        self.listeners: list[Listener] = []
        self.drivers: set[StreamDriver] = set()
        self._write_buffer_high_water = write_buffer_high_water
        self._max_slow_seconds = max_slow_seconds
        self.websockets: set[WebSocketDriver] = set()
        self._trim_timer: asyncio.TimerHandle | None = None

    async def start(
        self,
        name: str,
        host: str,
        port: int,
        factory: SessionFactory,
        ssl_context: ssl.SSLContext | None,
        *,
        deadlines: Deadlines = NO_DEADLINES,
    ) -> Listener:
        """Bind and start accepting; port 0 picks a free port (see ``Listener.port``)."""

        def protocol() -> StreamDriver:
            # Kept in ``drivers`` from connection_made on: a connection whose TLS
            # handshake fails never gets connection_lost, and would stay forever.
            return StreamDriver(
                factory(),
                self._driver_closed,
                on_open=self.drivers.add,
                deadlines=deadlines,
                write_buffer_high_water=self._write_buffer_high_water,
                max_slow_seconds=self._max_slow_seconds,
            )

        handshake = deadlines.login if deadlines.login is not None else SSL_HANDSHAKE_TIMEOUT
        return await self._bind(name, host, port, protocol, ssl_context, handshake)

    async def start_websocket(
        self,
        name: str,
        host: str,
        port: int,
        factories: Mapping[str, SessionFactory],
        ssl_context: ssl.SSLContext | None,
        settings: WebSocketSettings,
        *,
        deadlines: Deadlines = NO_DEADLINES,
        max_connect_frame: int | None = None,
    ) -> Listener:
        """Like :meth:`start`, for WebSocket: ``factories`` maps "mqtt"/"stomp" to sessions."""

        from sealmq.net.websocket import WebSocketDriver

        def protocol() -> WebSocketDriver:
            driver = WebSocketDriver(
                factories,
                settings,
                self.websockets.discard,
                deadlines=deadlines,
                max_connect_frame=max_connect_frame,
                write_buffer_high_water=self._write_buffer_high_water,
                max_slow_seconds=self._max_slow_seconds,
            )
            self.websockets.add(driver)
            return driver

        return await self._bind(name, host, port, protocol, ssl_context, SSL_HANDSHAKE_TIMEOUT)

    async def _bind(
        self,
        name: str,
        host: str,
        port: int,
        protocol: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
    ) -> Listener:
        loop = asyncio.get_running_loop()
        sockets = bind_sockets(host, port)
        servers: list[asyncio.Server] = []
        try:
            for sock in sockets:
                servers.append(
                    await loop.create_server(
                        protocol,
                        sock=sock,
                        backlog=BACKLOG,
                        ssl=ssl_context,
                        ssl_handshake_timeout=(
                            handshake_timeout if ssl_context is not None else None
                        ),
                    )
                )
        except BaseException:
            for server in servers:
                server.close()
            for sock in sockets:
                sock.close()
            raise
        bound = sockets[0].getsockname()[1]
        listener = Listener(name, host, bound, ssl_context is not None, tuple(servers))
        self.listeners.append(listener)
        return listener

    def _driver_closed(self, driver: StreamDriver) -> None:
        self.drivers.discard(driver)
        if not self.drivers:
            # The last client left: once nobody came back for a while, give the memory
            # its traffic used back to the OS.
            self.trim_when_idle()

    def trim_when_idle(self) -> None:
        """Give freed memory back once no client has been connected for
        :data:`TRIM_AFTER_IDLE_SECONDS` (after the last one leaves, and after start-up,
        whose stragglers, such as the journal's first syncs, come after ready)."""
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        loop = asyncio.get_running_loop()
        self._trim_timer = loop.call_later(TRIM_AFTER_IDLE_SECONDS, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        self._trim_timer = None
        if not self.drivers:
            release_free_memory()

    def stop_accepting(self) -> None:
        for listener in self.listeners:
            for server in listener.servers:
                server.close()

    def shutdown_sessions(self, reason: str) -> None:
        """Tell every connected client why, and close its connection."""
        for driver in list(self.drivers):
            driver.session.shutdown(reason)
        for websocket in list(self.websockets):
            websocket.shutdown(reason)

    async def close(self, reason: str = "The broker is shutting down") -> None:
        self.stop_accepting()
        self.shutdown_sessions(reason)
        for listener in self.listeners:
            for server in listener.servers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 5)
        for driver in list(self.drivers):
            driver.abort()
        for websocket in list(self.websockets):
            websocket.abort()
        self.listeners.clear()
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` names (all interfaces when empty).

    Bound here rather than by the event loop: uvloop resolves a host name on a pool of
    four threads that then stay, and encodes it with the ``idna`` codec, which loads
    ``unicodedata``; together about 0.5 MiB the broker would keep for nothing. With
    port 0, every address gets the port the first one was given.
    """
    try:
        name = host.encode("ascii") if host else None
    except UnicodeEncodeError:
        name = host.encode("idna")
    infos = socket.getaddrinfo(
        name, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _, address in infos:
            ip = str(address[0])
            if (family, ip) in seen:
                continue
            seen.add((family, ip))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Each address family on its own socket, as asyncio does.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (ip, sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{ip} port {address[1]!r}"
                raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
