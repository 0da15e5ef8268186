"""AMQP 1.0: our SASL layer in front of Qpid Proton's protocol engine, driven sans-IO.

The listener owns TLS; this session sees clear bytes. They go first to
:class:`_Sasl` (PLAIN against the broker's users, EXTERNAL from the TLS client
certificate, ANONYMOUS only when the broker allows anonymous access: the PyPI
build of Proton has no Cyrus SASL and its built-in server offers neither PLAIN
nor our user store), then, once the client is authenticated, to a server
:class:`proton.Transport` bound to a :class:`proton.Connection`. Every batch of
bytes in is followed by a pass over the engine's events (:meth:`AmqpSession._pump`),
which maps links onto core consumers and producers, and the engine's output is
what :meth:`data_to_send` hands the driver. ``docs/amqp.md`` has the mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cproton import (  # type: ignore[import-untyped]
    PN_DELIVERY,
    PN_LINK_FLOW,
    PN_TRANSPORT,
    isnull,
    pn_collector_peek,
    pn_collector_pop,
    pn_delivery,
    pn_delivery_link,
    pn_delivery_remote_state,
    pn_delivery_settle,
    pn_delivery_tag,
    pn_event_delivery,
    pn_event_link,
    pn_event_type,
    pn_link_advance,
    pn_link_is_receiver,
    pn_link_send,
)
from proton import (
    Collector,
    Condition,
    Delivery,
    Described,
    Disposition,
    Event,
    Link,
    Terminus,
    Transport,
    symbol,
    ulong,
)
from proton import Connection as AmqpConnection
from proton import byte as amqp_byte

from sealmq.adapters.amqp_sasl import (
    FRAME,
    MAX_SASL_FRAME,
    SASL_AUTH,
    SASL_FRAME_TYPE,
    SASL_HEADER,
    SASL_OK,
    SASL_SYS_PERM,
    SaslError,
    mechanisms_frame,
    outcome_frame,
    parse_sasl_init,
)
from sealmq.adapters.amqp_values import message_id_of, to_amqp_value, to_core_value
from sealmq.adapters.base import Authenticator
from sealmq.adapters.base import Link as DriverLink
from sealmq.core.authorization import Permission
from sealmq.core.bodies import decode_map, decode_stream, encode_map, encode_stream
from sealmq.core.broker import Broker
from sealmq.core.connection import Connection, SubscribeOptions
from sealmq.core.consumers import AckMode, Consumer, Entry, Outcome
from sealmq.core.errors import (
    AuthorizationError,
    BrokerError,
    DestinationError,
    LimitError,
    SubscriptionError,
    TransactionError,
)
from sealmq.core.model import (
    BodyKind,
    Destination,
    DestinationKind,
    Message,
)
from sealmq.core.session import Session as CoreSession
from sealmq.wire.amqp import (
    AmqpDecodeError,
    Body,
    decode_message,
    decode_value,
    encode_message,
    encode_value,
)
from sealmq.wire.amqp import AmqpMessage as SectionsMessage

__all__ = ["AmqpSession"]

log = logging.getLogger("sealmq.amqp")

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"

#: Link credit the broker grants a client's sender link, topped up as messages are
#: accepted (so at most this many are unconfirmed per link)...
SENDER_CREDIT = 500
#: ...and about this many bytes: the credit is for the largest message the link has
#: lately carried (at first the largest the broker takes, halving with each smaller
#: one), so a client of large messages is held to a few in flight, and one of small
#: messages reaches the full window after a dozen or so.
SENDER_BUFFER_BYTES = 8 * 1024 * 1024
#: The largest AMQP frame this broker accepts and announces (a larger message comes in
#: several transfer frames).
MAX_FRAME_SIZE = 64 * 1024
#: A session's incoming window, in frames: what a client may send before the broker
#: has to re-open it with a flow frame. Proton derives the window from a byte capacity
#: (window x frame size, 4 MiB here); with 1 MiB frames it was 4 frames, and a
#: client sending 1 KiB messages stalled on it every fourth transfer (bench/RESULTS.md).
SESSION_WINDOW_FRAMES = 64
CHANNEL_MAX = 32767
#: The idle time-out the broker announces (seconds); the client's is honoured too.
IDLE_TIMEOUT = 60.0

_QUEUE_PREFIXES = ("queue://", "queue:")
_TOPIC_PREFIXES = ("topic://", "topic:")
_TEMP_QUEUE_PREFIX = "temp-queue://"
_TEMP_TOPIC_PREFIX = "temp-topic://"
#: Transactions (AMQP 1.0 part 4): the coordinator's control messages and states.
_DECLARE, _DECLARE_CODE = symbol("amqp:declare:list"), 0x31
_DISCHARGE, _DISCHARGE_CODE = symbol("amqp:discharge:list"), 0x32
_DECLARED = 0x33
_TRANSACTIONAL_STATE = 0x34
_ACCEPTED_CODE = 0x24
_SELECTOR_FILTER = symbol("apache.org:selector-filter:string")
_SELECTOR_CODE = 0x0000468C00000004
_ANNOTATIONS = "amqp"
#: Marks a body that is an AMQP-encoded amqp-value of a type the core has no body for.
_AMQP_VALUE = "amqp-value"
#: Message annotations Qpid JMS and ActiveMQ use to say what a message is.
_JMS_MSG_TYPE = symbol("x-opt-jms-msg-type")
_JMS_DEST = symbol("x-opt-jms-dest")
_JMS_REPLY_TO = symbol("x-opt-jms-reply-to")
_JMS_TYPES = {
    BodyKind.EMPTY: 0,
    BodyKind.OBJECT: 1,
    BodyKind.MAP: 2,
    BodyKind.BYTES: 3,
    BodyKind.STREAM: 4,
    BodyKind.TEXT: 5,
}


#: Proton's wrappers of its C objects (untyped in Proton): see ``AmqpSession._pump``.
_wrap_delivery: Callable[[Any], Delivery] = Delivery.wrap
_wrap_link: Callable[[Any], Link] = Link.wrap
_wrap_event: Callable[[Any], Event] = Event.wrap


class _Refused(Exception):
    """A link or transfer refused with an AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def _condition_of(exc: BrokerError) -> str:
    if isinstance(exc, AuthorizationError):
        return "amqp:unauthorized-access"
    if isinstance(exc, LimitError):
        return "amqp:resource-limit-exceeded"
    if isinstance(exc, DestinationError):
        return "amqp:not-found"
    if isinstance(exc, SubscriptionError | TransactionError):
        return "amqp:invalid-field"
    return "amqp:internal-error"


# ------------------------------------------------------------------------ links


@dataclass(slots=True, eq=False)
class _Incoming:
    """A client's sender link: the broker receives on it."""

    link: Link
    destination: Destination | None
    #: Deliveries received, not yet settled, in order.
    unsettled: int = 0
    #: Bytes of the transfer still arriving (multi-frame messages).
    partial: int = 0
    #: The size credit is granted for (see ``SENDER_BUFFER_BYTES``).
    largest: int = 0

    def credit_target(self) -> int:
        return max(1, min(SENDER_CREDIT, SENDER_BUFFER_BYTES // max(1, self.largest)))


@dataclass(slots=True, eq=False)
class _Outgoing:
    """A client's receiver link: the broker sends on it, from one core consumer."""

    link: Link
    consumer: Consumer | None = None
    presettled: bool = False
    #: Delivery tag -> core message id, for the client's dispositions.
    in_flight: dict[str, str] = field(default_factory=dict)
    durable: bool = False
    next_tag: int = 0


class AmqpSession:
    """One AMQP 1.0 connection: SASL, then the engine; links onto the core."""

    def __init__(
        self,
        broker: Broker,
        authenticator: Authenticator,
        *,
        anonymous: bool = False,
        max_message_size: int = 100 * 1024 * 1024,
    ) -> None:
        self.broker = broker
        self.authenticator = authenticator
        self.anonymous = anonymous
        self.max_message_size = max_message_size
        self.link: DriverLink | None = None
        self.connection: Connection | None = None
        self._principal: Any = None
        self._out: list[bytes] = []
        self._sasl_buffer = bytearray()
        #: "header" (waiting for the client's protocol header), "init", "login"
        #: (authenticating), "amqp" (the engine has the bytes), "closed".
        self._phase = "header"
        self._held = bytearray()  # bytes after the sasl-init, while logging in
        self._transport: Transport | None = None
        self._engine: AmqpConnection | None = None
        self._collector: Collector | None = None
        self._core_session: CoreSession | None = None
        # Links are keyed by Proton's C pointer (``link._impl``), which hashes by
        # address in C; the Python wrappers hash through a cffi call per lookup.
        self._incoming: dict[Any, _Incoming] = {}
        self._outgoing: dict[Any, _Outgoing] = {}
        self._ids = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pump_pending = False
        self._temp: list[Destination] = []
        self._closing = False
        self._eof = False
        #: Coordinator links (transactions), and the transactions they declared.
        self._coordinators: set[Any] = set()  # C pointers, as above
        self._transactions: set[bytes] = set()

    # ----------------------------------------------------------------- driver side

    def connection_made(self, link: DriverLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        if self._phase == "amqp":
            self._push(data)
            return
        if self._phase in ("closed",):
            return
        if self._phase == "login":
            self._held += data
            return
        self._sasl_buffer += data
        self._sasl_step()

    def eof_received(self) -> None:
        self._eof = True
        if self._transport is not None and self._phase == "amqp":
            with contextlib.suppress(Exception):
                self._transport.close_tail()
            self._pump()
        self._close_core()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_core()
        self._phase = "closed"
        self.link = None

    def data_to_send(self) -> list[bytes]:
        transport = self._transport
        if transport is not None:
            while True:
                try:
                    pending = transport.pending()
                except Exception:
                    break
                if pending <= 0:
                    break
                chunk = transport.peek(pending)
                if not chunk:
                    break
                transport.pop(len(chunk))
                self._out.append(bytes(chunk))
        out, self._out = self._out, []
        return out

    def pause_writing(self) -> None:
        for state in self._outgoing.values():
            if state.consumer is not None:
                state.consumer.paused = True

    def resume_writing(self) -> None:
        if self.connection is None:
            return
        for state in list(self._outgoing.values()):
            if state.consumer is not None and not state.consumer.closed:
                self.connection.resume(state.consumer)

    def shutdown(self, reason: str) -> None:
        self._close_connection("amqp:connection:forced", reason)

    def abort_slow_consumer(self, reason: str) -> None:
        self.shutdown(reason)

    def pending_frame_offset(self) -> int | None:
        # Proton buffers partial frames itself; before it, a partial SASL frame.
        if self._phase in ("header", "init") and self._sasl_buffer:
            return 0
        return None

    def deadline_expired(self, reason: str) -> None:
        if self._phase == "amqp":
            self._close_connection("amqp:resource-limit-exceeded", reason)
        else:
            self._drop(reason)

    # ----------------------------------------------------------------- SASL

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        if self.link is not None:
            self.link.schedule_flush(len(data))

    def _drop(self, reason: str) -> None:
        """Close before the engine has the connection (SASL phase)."""
        if self._phase == "closed":
            return
        log.info("AMQP connection from %s closed: %s", self._peer(), reason)
        self._phase = "closed"
        self._close_core()
        if self.link is not None:
            self.link.close()

    def _peer(self) -> str:
        return self.link.peer if self.link is not None else "?"

    def _mechanisms(self) -> list[str]:
        names = []
        if self.link is not None and self.link.peer_certificate is not None:
            names.append("EXTERNAL")
        names.append("PLAIN")
        if self.anonymous:
            names.append("ANONYMOUS")
        return names

    def _sasl_step(self) -> None:
        buf = self._sasl_buffer
        if self._phase == "header":
            if len(buf) < 8:
                if not SASL_HEADER.startswith(bytes(buf)) and not AMQP_HEADER.startswith(
                    bytes(buf)
                ):
                    self._bad_header()
                return
            header = bytes(buf[:8])
            if header == AMQP_HEADER:
                # No SASL: only an anonymous client, and only where that is allowed.
                if not self.anonymous:
                    self._write(SASL_HEADER)
                    self._drop("the client skipped SASL; authentication is required")
                    return
                rest = bytes(buf)
                buf.clear()
                self._phase = "login"
                self._held += rest[8:]
                self._login("ANONYMOUS", b"", header=rest[:8])
                return
            if header != SASL_HEADER:
                self._bad_header()
                return
            del buf[:8]
            self._write(SASL_HEADER + mechanisms_frame(self._mechanisms()))
            self._phase = "init"
        if len(buf) < FRAME.size:
            return
        size, doff, frame_type, _ = FRAME.unpack_from(buf)
        if size > MAX_SASL_FRAME or size < FRAME.size or doff < 2 or doff * 4 > size:
            self._write(outcome_frame(SASL_SYS_PERM))
            self._drop("malformed SASL frame")
            return
        if len(buf) < size:
            return
        if frame_type != SASL_FRAME_TYPE:
            self._write(outcome_frame(SASL_SYS_PERM))
            self._drop("expected a SASL frame")
            return
        body = bytes(buf[doff * 4 : size])
        rest = bytes(buf[size:])
        buf.clear()
        try:
            init = parse_sasl_init(body)
        except SaslError as exc:
            self._write(outcome_frame(SASL_SYS_PERM))
            self._drop(str(exc))
            return
        self._phase = "login"
        self._held += rest
        self._login(init.mechanism, init.response)

    def _bad_header(self) -> None:
        # The spec's answer to a header it does not speak: the one it does, then close.
        self._write(SASL_HEADER)
        self._drop("not an AMQP 1.0 protocol header")

    def _login(self, mechanism: str, response: bytes, header: bytes | None = None) -> None:
        if self.link is not None:
            self.link.pause_reading()
        task = asyncio.ensure_future(self._authenticate(mechanism, response, header))
        task.add_done_callback(_log_task_failure)

    async def _authenticate(self, mechanism: str, response: bytes, header: bytes | None) -> None:
        link = self.link
        if link is None:
            return
        username: str | None = None
        password: str | None = None
        certificate = None
        if mechanism == "PLAIN":
            parts = response.split(b"\x00")
            if len(parts) != 3:
                self._refuse_login("PLAIN", None, sasl=header is None)
                return
            try:
                username = parts[1].decode("utf-8")
                password = parts[2].decode("utf-8")
            except UnicodeDecodeError:
                self._refuse_login("PLAIN", None, sasl=header is None)
                return
        elif mechanism == "EXTERNAL":
            certificate = link.peer_certificate
            if certificate is None:
                self._refuse_login("EXTERNAL", None, sasl=True)
                return
            username = response.decode("utf-8", "replace") or None
        elif mechanism != "ANONYMOUS" or not self.anonymous:
            self._refuse_login(mechanism, None, sasl=header is None)
            return
        principal = await self.authenticator.authenticate_async(
            username, password, certificate, link.peer
        )
        if self._phase == "closed" or self.link is None:
            return
        if principal is None:
            self._refuse_login(mechanism, username, sasl=header is None)
            return
        self._principal = replace(principal, certificate=link.peer_certificate)
        if header is None:
            self._write(outcome_frame(SASL_OK))
        link.logged_in()
        self._start_engine()
        held = bytes(self._held)
        self._held.clear()
        link.resume_reading()
        self._push((header or b"") + held)

    def _refuse_login(self, mechanism: str, username: str | None, *, sasl: bool) -> None:
        log.info("AMQP login refused for %r (%s) from %s", username or "", mechanism, self._peer())
        if sasl:
            self._write(outcome_frame(SASL_AUTH))
        self._drop("authentication failed")

    # ----------------------------------------------------------------- the engine

    def _start_engine(self) -> None:
        transport = Transport(Transport.SERVER)
        transport.max_frame_size = MAX_FRAME_SIZE
        transport.channel_max = CHANNEL_MAX
        transport.idle_timeout = IDLE_TIMEOUT
        engine = AmqpConnection()
        collector = Collector()
        engine.collect(collector)
        transport.bind(engine)
        engine.container = self.broker.broker_id
        self._transport, self._engine, self._collector = transport, engine, collector
        self._phase = "amqp"

    def _push(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or not data:
            self._pump()
            return
        view = memoryview(data)
        while view:
            try:
                capacity = transport.capacity()
            except Exception:
                capacity = -1
            if capacity <= 0:
                break
            chunk = view[:capacity]
            try:
                transport.push(bytes(chunk))
            except Exception:
                capacity = -1
                break
            view = view[len(chunk) :]
            self._pump()
        self._pump()

    def _pump(self) -> None:
        """Handle the engine's events, then have its output written."""
        collector = self._collector
        if collector is None:
            return
        # Events are read through cproton, Proton's own C binding, rather than
        # ``Collector.peek``: that wraps every object an event touches (transport,
        # connection, session, link, delivery) in Python objects, which cost more than
        # the rest of a message's path (bench/RESULTS.md). The two events every message
        # brings get only the wrapper they need; the rest take Proton's full path.
        impl = collector._impl
        while True:
            event = pn_collector_peek(impl)
            if isnull(event):
                break
            number = pn_event_type(event)
            try:
                if number == PN_DELIVERY:
                    delivery = pn_event_delivery(event)
                    if pn_link_is_receiver(pn_delivery_link(delivery)):
                        self._received(_wrap_delivery(delivery))
                    elif not self._accepted(delivery):
                        self._disposition(_wrap_delivery(delivery))
                elif number == PN_LINK_FLOW:
                    self._flow(_wrap_link(pn_event_link(event)))
                elif number != PN_TRANSPORT:  # "output is pending": written below anyway
                    self._handle(_wrap_event(event))
            except _Refused as exc:
                self._close_connection(exc.condition, exc.description)
            except BrokerError as exc:
                self._close_connection(_condition_of(exc), str(exc))
            pn_collector_pop(impl)
        self._schedule_tick()
        if self.link is not None:
            self.link.schedule_flush()

    def _pump_soon(self) -> None:
        """:meth:`_pump` once for all the store confirmations of one batch, not per
        message (they complete together)."""
        if self._pump_pending or self.link is None:
            return
        self._pump_pending = True
        self.link.call_later(0, self._pump_now)

    def _pump_now(self) -> None:
        self._pump_pending = False
        self._pump()

    def _schedule_tick(self) -> None:
        transport = self._transport
        if transport is None or self.link is None or self._timer is not None:
            return
        try:
            deadline = transport.tick(time.monotonic())
        except Exception:
            return
        if deadline > 0:
            self._timer = self.link.call_later(max(0.0, deadline - time.monotonic()), self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        if self._transport is None or self._phase != "amqp":
            return
        self._pump()

    def _close_connection(self, condition: str, description: str) -> None:
        engine = self._engine
        if engine is None:
            self._drop(description)
            return
        if self._closing:
            return
        self._closing = True
        log.info("AMQP connection from %s closed: %s", self._peer(), description)
        engine.condition = Condition(condition, description)
        engine.close()
        self._close_core()
        if self.link is not None:
            self.link.schedule_flush()
            self.link.close()

    def _handle(self, event: Any) -> None:
        kind = event.type
        if kind is Event.CONNECTION_REMOTE_OPEN:
            self._open(event.connection)
        elif kind is Event.SESSION_REMOTE_OPEN:
            event.session.incoming_capacity = SESSION_WINDOW_FRAMES * MAX_FRAME_SIZE
            event.session.open()
        elif kind is Event.LINK_REMOTE_OPEN:
            self._attach(event.link)
        elif kind is Event.LINK_REMOTE_CLOSE or kind is Event.LINK_REMOTE_DETACH:
            self._detach(event.link, closed=kind is Event.LINK_REMOTE_CLOSE)
        elif kind is Event.SESSION_REMOTE_CLOSE:
            links = [s.link for s in self._incoming.values()]
            links += [s.link for s in self._outgoing.values()]
            for link in links:
                if link.session == event.session:
                    self._detach(link, closed=False)
            event.session.close()
        elif kind is Event.CONNECTION_REMOTE_CLOSE:
            self._close_core()
            event.connection.close()
            # Our close answers the client's: written, then the socket closes.
            self._closing = True
            if self.link is not None:
                self.link.schedule_flush()
                self.link.close()
        elif kind is Event.TRANSPORT_ERROR:
            condition = event.transport.condition
            log.info(
                "AMQP connection from %s: %s",
                self._peer(),
                condition.description if condition else "transport error",
            )
            # Proton has queued its close frame with the condition: write it, then close.
            self._close_core()
            self._closing = True
            if self.link is not None:
                self.link.schedule_flush()
                self.link.close()
        elif kind is Event.TRANSPORT_TAIL_CLOSED and not self._closing and not self._eof:
            # The engine stopped reading (an unknown performative, a frame it could not
            # take) without an error of its own: close with one.
            self._close_connection(
                "amqp:decode-error", "a frame the broker could not decode; closing"
            )
        elif kind is Event.TRANSPORT_CLOSED:
            self._close_core()
            if self.link is not None:
                self.link.close()

    def _open(self, engine: AmqpConnection) -> None:
        container = engine.remote_container or None
        assert self._principal is not None
        try:
            self.connection = self.broker.connect(
                client_id=container,
                principal=self._principal,
                peer=self._peer(),
                takeover=False,
            )
        except BrokerError as exc:
            engine.condition = Condition(_condition_of(exc), str(exc))
            engine.open()
            engine.close()
            return
        self._core_session = self.connection.create_session("amqp")
        engine.offered_capabilities = [symbol("ANONYMOUS-RELAY"), symbol("DELAYED_DELIVERY")]
        engine.open()

    # ----------------------------------------------------------------- addresses

    def _destination(self, address: str | None, capabilities: list[str]) -> Destination:
        if not address:
            raise _Refused("amqp:invalid-field", "the link names no address")
        for prefix in _QUEUE_PREFIXES:
            if address.startswith(prefix):
                return Destination.queue(address[len(prefix) :])
        for prefix in _TOPIC_PREFIXES:
            if address.startswith(prefix):
                return Destination.topic(address[len(prefix) :])
        if address.startswith(_TEMP_QUEUE_PREFIX):
            return Destination(DestinationKind.TEMP_QUEUE, address[len(_TEMP_QUEUE_PREFIX) :])
        if address.startswith(_TEMP_TOPIC_PREFIX):
            return Destination(DestinationKind.TEMP_TOPIC, address[len(_TEMP_TOPIC_PREFIX) :])
        if "topic" in capabilities:
            return Destination.topic(address)
        if "temporary-queue" in capabilities:
            return Destination(DestinationKind.TEMP_QUEUE, address)
        if "temporary-topic" in capabilities:
            return Destination(DestinationKind.TEMP_TOPIC, address)
        return Destination.queue(address)

    @staticmethod
    def _address(destination: Destination) -> str:
        return str(destination)

    @staticmethod
    def _capabilities(terminus: Terminus) -> list[str]:
        data = terminus.capabilities
        if data is None:
            return []
        data.rewind()
        names: list[str] = []
        try:
            while data.next() is not None:
                value = data.get_object()
                if isinstance(value, str):
                    names.append(str(value))
                elif isinstance(value, list | tuple):
                    names.extend(str(v) for v in value)
                elif hasattr(value, "elements"):
                    names.extend(str(v) for v in value.elements)
        except Exception:
            return names
        return names

    # ----------------------------------------------------------------- links

    def _attach(self, link: Link) -> None:
        try:
            if link.is_receiver:
                self._attach_incoming(link)
            else:
                self._attach_outgoing(link)
        except (_Refused, BrokerError) as exc:
            if isinstance(exc, _Refused):
                condition, description = exc.condition, exc.description
            else:
                condition, description = _condition_of(exc), str(exc)
            log.info("AMQP link %r refused: %s", link.name, description)
            # The spec's refusal: attach with no terminus, then detach with the error.
            if link.is_receiver:
                link.source.copy(link.remote_source)
            else:
                link.target.copy(link.remote_target)
            link.open()
            link.condition = Condition(condition, description)
            link.close()

    def _attach_incoming(self, link: Link) -> None:
        assert self.connection is not None
        remote = link.remote_target
        if remote.type == Terminus.COORDINATOR:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.COORDINATOR
            link.target.copy(remote)
            link.open()
            self._coordinators.add(link._impl)
            link.flow(SENDER_CREDIT)
            return
        destination = None
        if remote.address:
            destination = self._target(remote.address, self._capabilities(remote))
            self.connection.authorize(Permission.WRITE, destination)
        link.source.copy(link.remote_source)
        link.target.copy(remote)
        if link.remote_snd_settle_mode == Link.SND_SETTLED:
            link.snd_settle_mode = Link.SND_SETTLED
        link.rcv_settle_mode = Link.RCV_FIRST
        link.open()
        state = _Incoming(link, destination, largest=self.max_message_size)
        self._incoming[link._impl] = state
        link.flow(state.credit_target())

    def _target(self, address: str, capabilities: list[str]) -> Destination:
        destination = self._destination(address, capabilities)
        if destination.is_temporary:
            assert self.connection is not None
            destination = self._known_temp(destination)
        return destination

    def _known_temp(self, destination: Destination) -> Destination:
        return destination

    def _attach_outgoing(self, link: Link) -> None:
        assert self.connection is not None and self._core_session is not None
        remote = link.remote_source
        capabilities = self._capabilities(remote)
        if remote.dynamic:
            made = self.connection.create_temp_queue(f"amqp-{self._next_id()}")
            self._temp.append(made)
            destination = made
        else:
            destination = self._destination(remote.address, capabilities)
        selector = self._selector(remote)
        browse = remote.distribution_mode == Terminus.DIST_MODE_COPY and destination.is_queue
        durable_name = None
        if (
            destination.is_topic
            and not destination.is_temporary
            and (
                remote.durability != Terminus.NONDURABLE
                or remote.expiry_policy == Terminus.EXPIRE_NEVER
            )
        ):
            durable_name = link.name
            if self.connection.client_id is None:
                raise _Refused(
                    "amqp:invalid-field",
                    "a durable subscription needs the connection's container id",
                )
        state = _Outgoing(link, durable=durable_name is not None)
        state.presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        options = SubscribeOptions(
            tag=state,
            ack_mode=AckMode.INDIVIDUAL,
            prefetch=0,
            durable_name=durable_name,
            selector=selector,
            browse=browse,
            on_drained=self._drained,
            on_browse_end=self._browse_end,
        )
        consumer = self._core_session.subscribe(
            f"amqp-{self._next_id()}", destination, self, options
        )
        state.consumer = consumer
        self._outgoing[link._impl] = state
        link.source.copy(remote)
        if remote.dynamic:
            link.source.address = self._address(destination)
        link.target.copy(link.remote_target)
        if state.presettled:
            link.snd_settle_mode = Link.SND_SETTLED
        link.open()
        if link.credit:
            self.connection.flow(consumer, link.credit, drain=link.drain_mode)

    def _selector(self, source: Terminus) -> str | None:
        data = source.filter
        if data is None:
            return None
        data.rewind()
        try:
            if data.next() is None:
                return None
            filters = data.get_object()
        except Exception:
            raise _Refused("amqp:decode-error", "the source's filter does not decode") from None
        if not isinstance(filters, dict):
            return None
        for key, value in filters.items():
            descriptor = getattr(value, "descriptor", None)
            if (
                key == _SELECTOR_FILTER
                or str(key) == "jms-selector"
                or descriptor
                in (
                    _SELECTOR_FILTER,
                    _SELECTOR_CODE,
                )
            ):
                text = getattr(value, "value", value)
                if isinstance(text, str):
                    return str(text)
        return None

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _flow(self, link: Link) -> None:
        state = self._outgoing.get(link._impl)
        if state is None or state.consumer is None or self.connection is None:
            return
        self.connection.flow(state.consumer, link.credit, drain=link.drain_mode)

    def _drained(self, consumer: Consumer) -> None:
        state = consumer.tag
        if isinstance(state, _Outgoing):
            state.link.drained()
            if self.link is not None:
                self.link.schedule_flush()

    def _browse_end(self, consumer: Consumer) -> None:
        state = consumer.tag
        if isinstance(state, _Outgoing) and state.link.drain_mode:
            state.link.drained()

    def _detach(self, link: Link, *, closed: bool) -> None:
        incoming = self._incoming.pop(link._impl, None)
        state = self._outgoing.pop(link._impl, None)
        self._coordinators.discard(link._impl)
        if state is not None and state.consumer is not None and self.connection is not None:
            consumer = state.consumer
            with contextlib.suppress(BrokerError):
                self.connection.unsubscribe(consumer.id)
            if closed and state.durable:
                with contextlib.suppress(BrokerError):
                    self.connection.remove_durable(link.name)
        del incoming
        if closed:
            link.close()
        else:
            link.detach()

    # ----------------------------------------------------------------- sending (to us)

    def _received(self, delivery: Delivery) -> None:
        link = delivery.link
        if link._impl in self._coordinators:
            if delivery.readable and not delivery.partial:
                self._control(delivery, link)
            return
        state = self._incoming.get(link._impl)
        if state is None or not delivery.readable:
            return
        if delivery.partial:
            state.partial = delivery.pending
            if state.partial > self.max_message_size:
                raise _Refused(
                    "amqp:link:message-size-exceeded",
                    f"message larger than {self.max_message_size} bytes",
                )
            return
        encoded = link.recv(delivery.pending)
        link.advance()
        state.partial = 0
        size = len(encoded) if encoded else 0
        state.largest = max(size, state.largest // 2)
        presettled = delivery.settled
        try:
            message = self._to_core(encoded or b"", state)
        except _Refused as exc:
            self._settle_incoming(delivery, link, Disposition.REJECTED, exc)
            return
        except Exception as exc:
            self._settle_incoming(
                delivery, link, Disposition.REJECTED, _Refused("amqp:decode-error", str(exc))
            )
            return
        assert self.connection is not None
        txn = _transaction_of(delivery)
        try:
            if txn is not None:
                self._check_transaction(txn)
            future = self.connection.send(message, _tx_key(txn) if txn is not None else None)
        except (BrokerError, _Refused) as exc:
            refused = exc if isinstance(exc, _Refused) else _Refused(_condition_of(exc), str(exc))
            self._settle_incoming(delivery, link, Disposition.REJECTED, refused)
            return
        if txn is not None:
            # Accepted within the transaction; it is durable only at the discharge.
            delivery.local.data = [txn, Described(ulong(_ACCEPTED_CODE), [])]  # type: ignore[list-item]
            delivery.update(_TRANSACTIONAL_STATE)
            delivery.settle()
            self._credit(link)
            return
        if presettled:
            if future is not None:
                future.add_done_callback(_consume_failure)
            delivery.settle()
            self._credit(link)
            return
        if future is None:
            self._settle_incoming(delivery, link, Disposition.ACCEPTED, None)
            return

        def durable(done: asyncio.Future[None]) -> None:
            if self._phase != "amqp" or self._closing:
                return
            exc = None if done.cancelled() else done.exception()
            if exc is None:
                self._settle_incoming(delivery, link, Disposition.ACCEPTED, None)
            else:
                self._settle_incoming(
                    delivery,
                    link,
                    Disposition.REJECTED,
                    _Refused("amqp:internal-error", f"the message could not be stored: {exc}"),
                )
            self._pump_soon()

        future.add_done_callback(durable)

    def _control(self, delivery: Delivery, link: Link) -> None:
        """A message to the coordinator: declare or discharge a transaction."""
        encoded = link.recv(delivery.pending)
        link.advance()
        try:
            amqp = decode_message(encoded or b"")
        except AmqpDecodeError:
            self._settle_incoming(
                delivery, link, Disposition.REJECTED, _Refused("amqp:decode-error", "bad control")
            )
            return
        body = amqp.body
        descriptor = getattr(body, "descriptor", None)
        fields = getattr(body, "value", None) or []
        assert self.connection is not None
        if descriptor in (_DECLARE, _DECLARE_CODE):
            self._ids += 1
            txn = f"txn-{self._ids}".encode()
            self.connection.begin(_tx_key(txn))
            self._transactions.add(txn)
            delivery.local.data = [txn]  # type: ignore[list-item]
            delivery.update(_DECLARED)
            delivery.settle()
            self._credit(link)
            return
        if descriptor not in (_DISCHARGE, _DISCHARGE_CODE) or not fields:
            self._settle_incoming(
                delivery,
                link,
                Disposition.REJECTED,
                _Refused("amqp:not-implemented", "the coordinator takes declare and discharge"),
            )
            return
        txn = bytes(fields[0]) if fields[0] is not None else b""
        failed = bool(fields[1]) if len(fields) > 1 else False
        if txn not in self._transactions:
            self._settle_incoming(
                delivery,
                link,
                Disposition.REJECTED,
                _Refused("amqp:transaction:unknown-id", "no such transaction"),
            )
            return
        self._transactions.discard(txn)
        if failed:
            self.connection.abort(_tx_key(txn))
            self._settle_incoming(delivery, link, Disposition.ACCEPTED, None)
            return
        try:
            future = self.connection.commit(_tx_key(txn))
        except BrokerError as exc:
            self._settle_incoming(
                delivery,
                link,
                Disposition.REJECTED,
                _Refused("amqp:transaction:rollback", str(exc)),
            )
            return
        if future is None:
            self._settle_incoming(delivery, link, Disposition.ACCEPTED, None)
            return

        def committed(done: asyncio.Future[None]) -> None:
            if self._phase != "amqp" or self._closing:
                return
            exc = None if done.cancelled() else done.exception()
            refused = None if exc is None else _Refused("amqp:transaction:rollback", str(exc))
            outcome = Disposition.ACCEPTED if exc is None else Disposition.REJECTED
            self._settle_incoming(delivery, link, outcome, refused)
            self._pump_soon()

        future.add_done_callback(committed)

    def _check_transaction(self, txn: bytes) -> None:
        if txn not in self._transactions:
            raise _Refused("amqp:transaction:unknown-id", "no such transaction")

    def _settle_incoming(
        self, delivery: Delivery, link: Link, outcome: int, refused: _Refused | None
    ) -> None:
        if refused is not None:
            delivery.local.condition = Condition(refused.condition, refused.description)
        delivery.update(outcome)
        delivery.settle()
        self._credit(link)

    def _credit(self, link: Link) -> None:
        state = self._incoming.get(link._impl)
        if state is not None:
            target = state.credit_target()
        elif link._impl in self._coordinators:  # declares and discharges: small
            target = SENDER_CREDIT
        else:
            return
        credit = link.credit
        if credit < max(1, (target + 1) // 2):
            link.flow(target - credit)

    def _to_core(self, encoded: bytes, state: _Incoming) -> Message:
        amqp = decode_message(encoded)
        destination = state.destination
        if destination is None:
            if not amqp.to:
                raise _Refused("amqp:not-found", "an anonymous-relay message names no 'to'")
            destination = self._target(amqp.to, [])
            assert self.connection is not None
            self.connection.authorize(Permission.WRITE, destination)
        user = amqp.user_id
        if user:
            expected = self.connection.username if self.connection is not None else None
            given = user.decode("utf-8", "replace")
            if expected is not None and given != expected:
                raise _Refused(
                    "amqp:unauthorized-access",
                    f"user-id {given!r} is not the authenticated user",
                )
        message = Message("", destination)
        message.persistent = amqp.durable
        message.priority = amqp.priority
        if amqp.expiry_time:
            message.expiration = int(amqp.expiry_time)
        elif amqp.ttl:
            message.expiration = self.broker.now_ms() + int(amqp.ttl)
        if amqp.creation_time:
            message.timestamp = int(amqp.creation_time)
        message.redelivery_count = amqp.delivery_count
        message.client_message_id = message_id_of(amqp.id)
        message.correlation_id = message_id_of(amqp.correlation_id)
        message.subject = amqp.subject
        message.content_type = amqp.content_type or None
        message.content_encoding = amqp.content_encoding or None
        if amqp.reply_to:
            with contextlib.suppress(_Refused):
                message.reply_to = self._destination(amqp.reply_to, [])
        message.group_id = amqp.group_id
        message.group_seq = int(amqp.group_sequence or 0)
        message.reply_to_group_id = amqp.reply_to_group_id
        if amqp.properties:
            message.properties = {str(k): to_core_value(v) for k, v in amqp.properties.items()}
        annotations = amqp.annotations
        if annotations:
            # Where a message goes and its reply-to's kind are the broker's to say.
            keep = {k: v for k, v in annotations.items() if k not in (_JMS_DEST, _JMS_REPLY_TO)}
            if keep:
                stored = bytearray()
                encode_value(keep, stored)
                message.annotations = {_ANNOTATIONS: bytes(stored)}
        body = amqp.body
        jms_type = annotations.get(_JMS_MSG_TYPE) if annotations else None
        kind = amqp.body_kind
        if kind is Body.NONE or (kind is Body.VALUE and body is None):
            message.body_kind = BodyKind.EMPTY
        elif isinstance(body, str):
            message.body_kind = BodyKind.TEXT
            message.body = body.encode("utf-8", "surrogatepass")
        elif isinstance(body, bytes):
            message.body = body
            message.body_kind = BodyKind.OBJECT if jms_type == 1 else BodyKind.BYTES
        elif isinstance(body, dict):
            message.body_kind = BodyKind.MAP
            message.body = encode_map({str(k): to_core_value(v) for k, v in body.items()})
        elif isinstance(body, list):
            message.body_kind = BodyKind.STREAM
            message.body = encode_stream([to_core_value(v) for v in body])
        else:
            # An amqp-value of another type (a number, a uuid...): kept AMQP-encoded as
            # a bytes body, handed back to AMQP receivers as the value it was.
            message.body = amqp.raw_value or b"\x40"
            message.body_kind = BodyKind.BYTES
            message.annotations = {**(message.annotations or {}), _AMQP_VALUE: b""}
        return message

    # ----------------------------------------------------------------- delivering (from us)

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Core callback: one message for one receiver link."""
        state = consumer.tag
        assert isinstance(state, _Outgoing)
        link = state.link
        message = entry.message
        try:
            encoded = self._to_amqp(message, entry.redeliveries)
        except Exception as exc:
            log.warning("AMQP cannot carry message %s: %s", message.message_id, exc)
            if self.connection is not None:
                self.connection.settle(consumer, message.message_id, Outcome.REJECTED)
            return
        state.next_tag += 1
        tag = str(state.next_tag)
        # Straight through cproton: Link.delivery would wrap the delivery in Python
        # objects that nothing here uses (the disposition comes back as an event).
        impl = link._impl
        delivery = pn_delivery(impl, tag)
        pn_link_send(impl, encoded)
        pn_link_advance(impl)
        if state.presettled:
            pn_delivery_settle(delivery)
            if self.connection is not None:
                self.connection.settle(consumer, message.message_id, Outcome.ACCEPTED)
        else:
            state.in_flight[tag] = message.message_id
        if self.link is not None:
            self.link.schedule_flush(len(encoded))

    def _accepted(self, delivery: Any) -> bool:
        """The common disposition, a receiver's plain ``accepted``, handled on Proton's
        C delivery (no wrapper); False leaves anything else to :meth:`_disposition`."""
        if pn_delivery_remote_state(delivery) != _ACCEPTED_CODE or self.connection is None:
            return False
        state = self._outgoing.get(pn_delivery_link(delivery))
        if state is None or state.consumer is None:
            return False
        message_id = state.in_flight.pop(pn_delivery_tag(delivery), None)
        if message_id is None:
            return False
        self.connection.settle(state.consumer, message_id, Outcome.ACCEPTED)
        pn_delivery_settle(delivery)
        return True

    def _disposition(self, delivery: Delivery) -> None:
        link = delivery.link
        state = self._outgoing.get(link._impl)
        if state is None or state.consumer is None or self.connection is None:
            return
        if not delivery.settled and delivery.remote_state is None:
            return
        tag = str(delivery.tag)
        message_id = state.in_flight.pop(tag, None)
        if message_id is None:
            if delivery.settled:
                delivery.settle()
            return
        remote = delivery.remote_state
        undeliverable = False
        transaction: str | None = None
        if remote == _TRANSACTIONAL_STATE:
            data = delivery.remote.data or []
            txn = bytes(data[0]) if data and data[0] is not None else None
            inner = data[1] if len(data) > 1 else None
            code = getattr(inner, "descriptor", None)
            if txn is None or txn not in self._transactions:
                # Not ours (or discharged): the delivery stays as it is.
                state.in_flight[tag] = message_id
                return
            transaction = _tx_key(txn)
            remote = {
                _ACCEPTED_CODE: Disposition.ACCEPTED,
                0x25: Disposition.REJECTED,
                0x26: Disposition.RELEASED,
                0x27: Disposition.MODIFIED,
            }.get(int(code) if code is not None else _ACCEPTED_CODE, Disposition.ACCEPTED)
        if remote == Disposition.ACCEPTED or remote is None:
            outcome = Outcome.ACCEPTED
        elif remote == Disposition.RELEASED:
            outcome = Outcome.RELEASED
        elif remote == Disposition.REJECTED:
            outcome = Outcome.REJECTED
        elif remote == Disposition.MODIFIED:
            failed = delivery.remote.failed
            undeliverable = bool(delivery.remote.undeliverable)
            outcome = Outcome.MODIFIED if failed else Outcome.RELEASED
        else:
            state.in_flight[tag] = message_id
            return
        self.connection.settle(
            state.consumer,
            message_id,
            outcome,
            undeliverable_here=undeliverable,
            transaction=transaction,
        )
        delivery.settle()

    def _to_amqp(self, message: Message, redeliveries: int) -> bytes:
        amqp = SectionsMessage(
            durable=message.persistent,
            priority=message.priority,
            delivery_count=message.redelivery_count + redeliveries,
            id=(
                message.client_message_id
                if message.client_message_id is not None
                else message.message_id
            ),
            user_id=message.user_id.encode("utf-8") if message.user_id else None,
            to=self._address(message.destination),
            subject=message.subject,
            reply_to=self._address(message.reply_to) if message.reply_to is not None else None,
            correlation_id=message.correlation_id,
            content_type=message.content_type or None,
            content_encoding=message.content_encoding or None,
            creation_time=message.timestamp or None,
        )
        if message.expiration:
            amqp.expiry_time = message.expiration
            remaining = message.expiration - self.broker.now_ms()
            if remaining > 0:
                amqp.ttl = remaining
        if message.group_id:
            amqp.group_id = message.group_id
            amqp.group_sequence = message.group_seq
        if message.reply_to_group_id:
            amqp.reply_to_group_id = message.reply_to_group_id
        if message.properties:
            amqp.properties = {k: to_amqp_value(v) for k, v in message.properties.items()}
        annotations: dict[Any, Any] = {}
        stored = message.annotations.get(_ANNOTATIONS) if message.annotations else None
        if stored:
            with contextlib.suppress(AmqpDecodeError):
                kept, _ = decode_value(stored)
                if isinstance(kept, dict):
                    annotations.update(kept)
        kind = message.body_kind
        annotations[_JMS_MSG_TYPE] = amqp_byte(_JMS_TYPES.get(kind, 3))
        # The destination kinds as Qpid JMS reads them (queue 0, topic 1, temporary
        # queue 2, temporary topic 3), as ActiveMQ's AMQP transport sends them.
        annotations[_JMS_DEST] = amqp_byte(int(message.destination.kind))
        if message.reply_to is not None:
            annotations[_JMS_REPLY_TO] = amqp_byte(int(message.reply_to.kind))
        amqp.annotations = annotations
        if kind is BodyKind.TEXT:
            amqp.body_kind = Body.VALUE
            amqp.body = message.body.decode("utf-8", "surrogatepass")
        elif kind is BodyKind.EMPTY:
            amqp.body_kind = Body.VALUE
        elif kind is BodyKind.MAP:
            amqp.body_kind = Body.VALUE
            amqp.body = {k: to_amqp_value(v) for k, v in decode_map(message.body).items()}
        elif kind is BodyKind.STREAM:
            amqp.body_kind = Body.SEQUENCE
            amqp.body = [to_amqp_value(v) for v in decode_stream(message.body)]
        elif message.annotations and _AMQP_VALUE in message.annotations:
            amqp.body_kind = Body.VALUE
            amqp.raw_value = message.body
        else:
            amqp.body_kind = Body.DATA
            amqp.body = message.body
        return encode_message(amqp)

    # ----------------------------------------------------------------- teardown

    def _close_core(self) -> None:
        self._incoming.clear()
        self._outgoing.clear()
        if self.connection is not None:
            connection, self.connection = self.connection, None
            for destination in self._temp:
                with contextlib.suppress(BrokerError):
                    connection.delete_temp(destination)
            self._temp.clear()
            connection.close()


def _tx_key(txn: bytes) -> str:
    return "amqp:" + txn.hex()


def _transaction_of(delivery: Delivery) -> bytes | None:
    """The transaction a transfer names (its transactional-state), if it names one."""
    if delivery.remote_state != _TRANSACTIONAL_STATE:
        return None
    data = delivery.remote.data or []
    return bytes(data[0]) if data and data[0] is not None else b""


def _consume_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("AMQP login failed", exc_info=task.exception())
