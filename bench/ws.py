"""STOMP and MQTT over a secure WebSocket (``wss://``), for the WSS scenarios.

The benchmark's own STOMP and MQTT clients (:mod:`bench.stomp_client`,
:mod:`bench.mqtt_client`) are :class:`asyncio.Protocol` s that write a byte
stream and read one.  :func:`open_wss` puts a WebSocket between them and the
TLS connection, so the very same client code runs over ``wss://`` against every
broker: the TLS protocol here runs the client side of the ``websockets``
library's sans-IO protocol (handshake, masking, ping/pong, close), hands the
payload of every data frame to the client protocol as a stream, and sends each
``write`` of the client as one binary WebSocket message.  The clients already
coalesce a loop tick's frames into one write, so a burst of SENDs or ACKs is
one WebSocket message, as browser STOMP/MQTT clients commonly send them; STOMP
and MQTT are streams, so frames may share or span messages either way.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

P = TypeVar("P", bound=asyncio.Protocol)

_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


class WebSocketHandshakeError(Exception):
    """The broker refused the upgrade or did not agree on the subprotocol."""


@dataclass(frozen=True, slots=True)
class WsTarget:
    """Where on a broker's WebSocket listener a protocol lives."""

    path: str
    subprotocol: str  # "v12.stomp" or "mqtt"


class _WsFacade:
    """What the client protocol sees as its transport: writes become WebSocket messages."""

    def __init__(self, owner: _WsTlsProtocol) -> None:
        self._owner = owner

    def write(self, data: bytes) -> None:
        self._owner.send_message(data)

    def close(self) -> None:
        self._owner.close()

    def abort(self) -> None:
        self._owner.abort()

    def is_closing(self) -> bool:
        return self._owner.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        tls = self._owner.transport
        return default if tls is None else tls.get_extra_info(name, default)


class _WsTlsProtocol(asyncio.Protocol):
    """The protocol of the TLS connection: WebSocket client framing around ``inner``."""

    def __init__(self, inner: asyncio.Protocol, uri: str, subprotocol: str) -> None:
        self.inner = inner
        self.subprotocol = subprotocol
        self.ws = ClientProtocol(
            parse_uri(uri), subprotocols=[Subprotocol(subprotocol)], max_size=None
        )
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        self._open = False  # the inner protocol got connection_made

    # -- TLS side ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Response):
                self._handshake_done(event)
            elif isinstance(event, Frame) and event.opcode in _DATA_OPCODES and self._open:
                self.inner.data_received(bytes(event.data))
        self._flush()  # pongs, the close reply
        if ws.close_expected() and self.transport is not None:
            self.closing = True
            self.transport.close()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if not self.handshake.done():
            self.handshake.set_exception(
                exc or WebSocketHandshakeError("connection closed during the WebSocket handshake")
            )
        if self._open:
            # After a close frame either way, a reset or broken pipe is the peer
            # hanging up as it may (RFC 6455 7.1.1): a clean close for the client.
            clean = self.ws.close_rcvd is not None or self.ws.close_sent is not None
            self.inner.connection_lost(None if clean else exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _handshake_done(self, response: Response) -> None:
        if self.handshake.done():
            return
        failure = self.ws.handshake_exc
        if failure is None and self.ws.subprotocol != self.subprotocol:
            failure = WebSocketHandshakeError(
                f"broker chose subprotocol {self.ws.subprotocol!r}, not {self.subprotocol!r}"
            )
        if failure is not None:
            body = bytes(response.body or b"")[:200]
            self.handshake.set_exception(
                WebSocketHandshakeError(f"upgrade refused: {failure} {body!r}")
            )
            self.abort()
            return
        self._open = True
        self.inner.connection_made(cast(asyncio.Transport, _WsFacade(self)))
        self.handshake.set_result(None)

    def _flush(self) -> None:
        chunks = self.ws.data_to_send()
        if self.transport is not None and chunks and not self.transport.is_closing():
            data = b"".join(chunks)
            if data:  # b"" means "half-close", which TLS cannot do: close() handles it
                self.transport.write(data)

    # -- client side ------------------------------------------------------------------
    def send_message(self, data: bytes) -> None:
        if self.closing:
            return
        self.ws.send_binary(data)
        self._flush()

    def close(self) -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        try:
            self.ws.send_close(1000)
            self._flush()
        finally:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


async def open_wss(
    factory: Callable[[], P],
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    target: WsTarget,
    *,
    server_hostname: str,
) -> P:
    """Connect over TLS, upgrade to WebSocket at ``target``; return the client protocol.

    The returned protocol has had ``connection_made`` with a transport whose
    ``write`` sends one binary message; it gets ``data_received`` with each data
    frame's payload.  Wrap it in ``asyncio.wait_for`` for a deadline.
    """
    loop = asyncio.get_running_loop()
    inner = factory()
    uri = f"wss://{server_hostname}:{port}{target.path}"
    transport, outer = await loop.create_connection(
        lambda: _WsTlsProtocol(inner, uri, target.subprotocol),
        host,
        port,
        ssl=ssl_context,
        server_hostname=server_hostname,
    )
    try:
        await outer.handshake
    except BaseException:
        transport.abort()
        raise
    return inner


__all__ = ["WebSocketHandshakeError", "WsTarget", "open_wss"]
