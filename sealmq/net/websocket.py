"""MQTT and STOMP over WebSocket: the driver of the ``wss`` listener.

The WebSocket protocol itself (HTTP upgrade, framing, masking, fragmentation,
ping/pong, the close handshake, size limits, permessage-deflate) is the sans-IO
:class:`websockets.server.ServerProtocol`; this module only moves bytes between
it and the TLS transport, the way :class:`~sealmq.net.driver.StreamDriver` moves
them between the transport and a session. Once the upgrade is accepted, the
payload of every data frame (text or binary, fragment or whole message) is fed
to the chosen adapter's :class:`~sealmq.adapters.base.Session` as a byte stream,
so a STOMP frame may span or share WebSocket messages, and what a session writes
in one loop tick goes out as one binary message. The adapters are the ones that
serve the TCP listeners and do not know they run over WebSocket.

Which adapter serves a connection is chosen by the negotiated subprotocol
(:data:`SUBPROTOCOLS`), else, when the client offers none, by the request path
(``/mqtt``, ``/stomp``); anything else is refused with HTTP 400 and a message.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from websockets.exceptions import InvalidHeaderValue, NegotiationError
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from sealmq.adapters.base import Session, SessionFactory
from sealmq.config.settings import WebSocketSettings
from sealmq.core.security import PeerCertificate
from sealmq.net.driver import (
    NO_DEADLINES,
    Deadlines,
    FrameDeadline,
    SlowConsumerTimer,
    abort_slow_consumer,
)
from sealmq.net.identity import peer_certificate

__all__ = ["CLOSE_TIMEOUT", "PATHS", "SUBPROTOCOLS", "WebSocketDriver", "select_protocol"]

log = logging.getLogger("sealmq.net")

#: The websockets library logs every connection's opening and closing at INFO, and
#: request headers (cookies, Authorization) at DEBUG: it gets a logger of its own
#: that passes on only warnings and errors.
_protocol_log = logging.getLogger("sealmq.net.websocket")
_protocol_log.setLevel(logging.WARNING)

#: Subprotocol -> adapter, in the order the broker prefers them when a client offers
#: several: MQTT's registered name (3.1.1 and 5; ``mqttv3.1`` is what MQTT 3.1
#: clients send), then STOMP's, newest version first (the names stomp.js, RabbitMQ
#: and ActiveMQ use; the STOMP version itself is negotiated in CONNECT).
SUBPROTOCOLS: Mapping[str, str] = {
    "mqtt": "mqtt",
    "mqttv3.1": "mqtt",
    "v12.stomp": "stomp",
    "v11.stomp": "stomp",
    "v10.stomp": "stomp",
    "stomp": "stomp",
}
#: Request path -> adapter, for clients that offer no subprotocol.
PATHS: Mapping[str, str] = {"/mqtt": "mqtt", "/stomp": "stomp"}

#: Seconds the broker waits for the client's answer to its close frame before it
#: drops the connection (websockets' own default close_timeout is 10 s; a client
#: that has gone needs no more than a round trip).
CLOSE_TIMEOUT = 5.0


def select_protocol(path: str, offered: Sequence[str]) -> tuple[str, str | None]:
    """The adapter for an upgrade request, and the subprotocol to answer (None: none).

    Raises :class:`websockets.exceptions.NegotiationError`, whose text the client
    gets with HTTP 400, when neither the subprotocols nor the path name one.
    """
    if offered:
        for name in SUBPROTOCOLS:
            if name in offered:
                return SUBPROTOCOLS[name], name
        raise NegotiationError(
            "unsupported subprotocol "
            + ", ".join(offered)[:200]
            + "; this endpoint speaks "
            + ", ".join(SUBPROTOCOLS)
        )
    kind = PATHS.get(path.partition("?")[0])
    if kind is None:
        raise NegotiationError(
            "no subprotocol offered: offer one of "
            + ", ".join(SUBPROTOCOLS)
            + ", or connect to /mqtt or /stomp"
        )
    return kind, None


class WebSocketDriver(asyncio.Protocol):
    """An asyncio protocol running one WebSocket connection; the ``Link`` of its session.

    Until the upgrade is accepted there is no session (:attr:`session` is None);
    then the factory of the chosen protocol makes one.
    """

    def __init__(
        self,
        factories: Mapping[str, SessionFactory],
        settings: WebSocketSettings,
        on_close: Callable[[WebSocketDriver], None],
        *,
        deadlines: Deadlines = NO_DEADLINES,
        max_connect_frame: int | None = None,
        write_buffer_high_water: int | None = None,
        max_slow_seconds: float | None = None,
    ) -> None:
        """``deadlines.login`` runs from the accept to ``logged_in`` (the upgrade has its
        own, shorter ``handshake_timeout``); until then a WebSocket message may be at most
        ``max_connect_frame`` bytes, so a peer that has not logged in cannot make the
        library buffer a whole ``max_message_size``. Once logged in,
        ``deadlines.frame_read`` bounds how long a part-received WebSocket frame, or a
        part-received STOMP/MQTT frame spread over WebSocket messages, may stay
        incomplete. ``write_buffer_high_water`` and ``max_slow_seconds`` are
        :class:`~sealmq.net.driver.StreamDriver`'s: a slow consumer is paused, then cut."""
        self.session: Session | None = None
        #: The adapter serving this connection ("mqtt", "stomp"), once chosen.
        self.kind: str | None = None
        self._factories = factories
        self._settings = settings
        self._on_close = on_close
        extensions: list[ServerExtensionFactory] = (
            [ServerPerMessageDeflateFactory()] if settings.permessage_deflate else []
        )
        origins: list[Origin | None] | None = None
        if settings.allowed_origins:
            # No Origin: not a browser, so not a cross-site request.
            origins = [Origin(origin) for origin in settings.allowed_origins] + [None]

        def select(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
            # websockets binds this to its protocol, hence a function, not a method.
            kind, subprotocol = select_protocol(self._path, offered)
            self.kind = kind
            return Subprotocol(subprotocol) if subprotocol is not None else None

        self._protocol = ServerProtocol(
            origins=origins,
            extensions=extensions,
            select_subprotocol=select,
            max_size=settings.max_message_size,
            logger=_protocol_log,
        )
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._login_timeout = deadlines.login
        self._frame_read = deadlines.frame_read
        self._frames: FrameDeadline | None = None
        #: Bytes the library has been handed; what it still buffers ends the stream.
        self._fed = 0
        self._high_water = write_buffer_high_water
        self._slow = (
            SlowConsumerTimer(self._loop, max_slow_seconds, self._too_slow)
            if max_slow_seconds is not None
            else None
        )
        self._writing_paused = False
        self._login_timer: asyncio.TimerHandle | None = None
        if deadlines.login is not None:
            self._login_timer = self._loop.call_later(deadlines.login, self._login_deadline)
        self._max_connect_frame = max_connect_frame
        self._path = ""
        self._received = 0
        self._answered = False
        self._refused = False
        self._flush_pending = False
        self._closed = False
        self._closing = False
        self._going_away = False
        self._peer = "?"

    # ----------------------------------------------------------------- asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has the Transport API but does not subclass it.
        self._transport = cast(asyncio.Transport, transport)
        if self._high_water is not None:
            self._transport.set_write_buffer_limits(high=self._high_water)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer = f"{peer[0]}:{peer[1]}"
        self._timer = self._loop.call_later(
            self._settings.handshake_timeout, self._handshake_timeout
        )

    def data_received(self, data: bytes) -> None:
        try:
            self._data_received(data)
        except Exception:
            # A bug must cost this connection only, never the broker.
            log.exception("WebSocket connection from %s failed on input; closing", self._peer)
            self.abort()

    def _data_received(self, data: bytes) -> None:
        protocol = self._protocol
        if self._refused:
            return
        if not self._answered:
            self._received += len(data)
        self._fed += len(data)
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                opcode = event.opcode
                if opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                    # Data before the client's close frame still counts; after the
                    # session closed, nothing does.
                    session = self.session
                    if session is not None and not self._closing and event.data:
                        payload = event.data
                        session.data_received(
                            payload if isinstance(payload, bytes) else bytes(payload)
                        )
        if not self._answered and protocol.state is State.CONNECTING:
            if protocol.handshake_exc is not None:
                answer = protocol.data_to_send()
                if answer and answer[0]:
                    # websockets answered itself (a line too long: 414, 431).
                    self._answered = self._refused = True
                    self._cancel_timer()
                    if self._transport is not None and not self._transport.is_closing():
                        self._transport.writelines(answer[:-1] if answer[-1] == b"" else answer)
                        self._transport.close()
                    return
                # Not HTTP at all: websockets closes without a word; say why.
                self._refuse(
                    http.HTTPStatus.BAD_REQUEST,
                    "Failed to open a WebSocket connection: did not receive a valid HTTP "
                    "request.\n",
                )
                return
            if self._received > self._settings.max_handshake_size:
                self._refuse_too_large()
                return
        if self._frames is not None:
            self._frames.watch(self._pending_frame())
        self._write_protocol_output()

    def _pending_frame(self) -> object | None:
        """Which frame is part-received: a WebSocket frame the library buffers (by where
        it starts in the stream), else the session's own; None when all came in whole."""
        buffered = len(self._protocol.reader.buffer)
        if buffered:
            return ("websocket", self._fed - buffered)
        if self.session is None:
            return None
        offset = self.session.pending_frame_offset()
        return None if offset is None else ("session", offset)

    def eof_received(self) -> bool:
        self._protocol.receive_eof()
        self._write_protocol_output()
        if self.session is not None:
            self.session.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if self._frames is not None:
            self._frames.cancel()
        if self._slow is not None:
            self._slow.resumed()
        try:
            if self.session is not None:
                self.session.connection_lost(exc)
        finally:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._slow is not None and not self._closed:
            self._slow.paused()
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._slow is not None:
            self._slow.resumed()
        if self.session is not None:
            self.session.resume_writing()

    def _too_slow(self) -> None:
        """The peer has not read for ``max_slow_seconds``: ActiveMQ's abortSlowConsumer."""
        if self._closed or not self._writing_paused or self._slow is None:
            return
        if self.session is not None:
            abort_slow_consumer(self.session, self._peer, self._slow.seconds)
        # Whatever the session said cannot get past a full buffer: do not wait for it.
        self.abort()

    def _frame_expired(self) -> None:
        if self._closed or self._frames is None or self.session is None:
            return
        seconds = self._frames.seconds
        log.info(
            "WebSocket client %s sent part of a frame and not the rest in %g s",
            self._peer,
            seconds,
        )
        self.session.deadline_expired(f"Frame not completed within {seconds:g} s")

    # ----------------------------------------------------------------- handshake

    def _handshake(self, request: Request) -> None:
        self._path = request.path
        size = len(request.path) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw_items())
        if size > self._settings.max_handshake_size:
            self._refuse_too_large()
            return
        protocol = self._protocol
        response = protocol.accept(request)
        exc = protocol.handshake_exc
        if isinstance(exc, InvalidHeaderValue) and exc.name == "Sec-WebSocket-Version":
            # RFC 6455 4.4: an unsupported version gets 426 naming the versions served.
            response = protocol.reject(
                http.HTTPStatus.UPGRADE_REQUIRED,
                f"Failed to open a WebSocket connection: unsupported WebSocket version "
                f"{exc.value!r}; this server speaks version 13.\n",
            )
            response.headers["Sec-WebSocket-Version"] = "13"
        self._answered = True
        self._cancel_timer()
        protocol.send_response(response)
        if response.status_code != 101:
            log.info(
                "WebSocket upgrade from %s refused: %d %s",
                self._peer,
                response.status_code,
                response.reason_phrase,
            )
            return
        assert self.kind is not None
        session = self._factories[self.kind]()
        self.session = session
        if self._max_connect_frame is not None and self._login_timer is not None:
            self._protocol.max_message_size = min(
                self._max_connect_frame, self._settings.max_message_size
            )
        session.connection_made(self)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if not self._answered and not self._closed:
            log.info("WebSocket client %s did not complete the upgrade in time", self._peer)
            self._refuse(
                http.HTTPStatus.REQUEST_TIMEOUT,
                "Failed to open a WebSocket connection: the upgrade request did not arrive "
                f"within {self._settings.handshake_timeout:g} seconds.\n",
            )

    def _refuse_too_large(self) -> None:
        self._refuse(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Failed to open a WebSocket connection: the upgrade request is larger than "
            f"{self._settings.max_handshake_size} bytes.\n",
        )

    def _refuse(self, status: http.HTTPStatus, text: str) -> None:
        """Answer an upgrade that cannot be served with an HTTP error, then close."""
        self._answered = self._refused = True
        self._cancel_timer()
        self._protocol.data_to_send()  # what websockets queued (an EOF) is replaced
        if self._transport is None or self._transport.is_closing():
            return
        response: Response = self._protocol.reject(status, text)
        self._transport.write(response.serialize())
        self._transport.close()

    # ----------------------------------------------------------------- output

    def _write_protocol_output(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self._protocol.data_to_send()
            return
        chunks = self._protocol.data_to_send()
        if not chunks:
            return
        if chunks[-1] == b"":
            # websockets asks to end the stream (a TLS transport cannot half-close).
            transport.writelines(chunks[:-1])
            transport.close()
            return
        transport.writelines(chunks)
        if self._protocol.close_expected() and self._timer is None:
            self._timer = self._loop.call_later(CLOSE_TIMEOUT, self.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _login_deadline(self) -> None:
        self._login_timer = None
        if self._closed or self.session is None:
            return  # still upgrading: ``handshake_timeout`` answers that (408)
        log.info(
            "WebSocket client %s did not log in within %g s; closing",
            self._peer,
            self._login_timeout,
        )
        self.session.deadline_expired(f"Not logged in within {self._login_timeout:g} s")

    # ----------------------------------------------------------------- Link

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        return None if self._transport is None else peer_certificate(self._transport)

    def logged_in(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._protocol.max_message_size = self._settings.max_message_size
        if self._frame_read is not None and self._frames is None and not self._closed:
            self._frames = FrameDeadline(self._loop, self._frame_read, self._frame_expired)
            # A frame may have begun while the login was checked.
            self._frames.watch(self._pending_frame())

    def schedule_flush(self, nbytes: int = 0) -> None:
        # One write per tick; the size hint matters only to StreamDriver's large writes.
        if not self._flush_pending and not self._closed:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.session is None:
            return
        chunks = self.session.data_to_send()
        if not chunks or self._protocol.state is not OPEN:
            return
        # One binary message per tick, whatever the number of frames in it.
        self._protocol.send_binary(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        self._write_protocol_output()

    def close(self) -> None:
        """Flush the session's output, then start the WebSocket close handshake."""
        if self._transport is None or self._transport.is_closing():
            return
        if self._protocol.state is not OPEN:
            return
        self._flush()
        self._closing = True
        code = CloseCode.GOING_AWAY if self._going_away else CloseCode.NORMAL_CLOSURE
        self._protocol.send_close(code)
        self._write_protocol_output()
        # The client's answer must be read, even if the session had paused reading
        # (a login being checked); what the session no longer wants is dropped.
        self._transport.resume_reading()

    def abort(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._frames is not None:
            self._frames.reading_paused = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._frames is not None and self._frames.reading_paused:
            self._frames.reading_resumed()  # the frame's clock starts again
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)

    # ----------------------------------------------------------------- listeners

    def shutdown(self, reason: str) -> None:
        """The broker stops: the session tells its client why, then closes with 1001."""
        self._going_away = True
        if self.session is not None:
            self.session.shutdown(reason)
        elif not self._answered:
            self._refuse(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{reason}.\n")
