"""OpenWire (ActiveMQ's JMS client protocol) on the core, mapped as ActiveMQ maps it.

See ``docs/openwire.md`` for the commands served, the wire versions and the mapping of
JMS headers and message types. Imported with the first OpenWire connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sealmq.adapters.base import Authenticator, Link
from sealmq.core.authorization import Permission
from sealmq.core.bodies import BodyFormatError, decode_map, decode_stream, encode_map, encode_stream
from sealmq.core.broker import Broker, Connection, SubscribeOptions
from sealmq.core.errors import AuthorizationError, BrokerError, SubscriptionError
from sealmq.core.model import (
    BodyKind,
    Byte,
    Char,
    Destination,
    DestinationKind,
    Float32,
    Int,
    Message,
    PropertyValue,
    Short,
    id_text,
)
from sealmq.core.queues import AckMode, Consumer, Entry, Outcome
from sealmq.core.session import Producer
from sealmq.core.session import Session as CoreSession
from sealmq.wire.openwire import (
    OpenWireCodec,
    OpenWireError,
    Structure,
    Throwable,
    Type,
    Typed,
    decode_primitive_map,
    encode_primitive_map,
    is_message,
    java_utf,
    name_of,
    read_java_utf,
)
from sealmq.wire.openwire import decode_stream as ow_decode_stream
from sealmq.wire.openwire import encode_stream as ow_encode_stream

__all__ = ["OpenWireSession"]

log = logging.getLogger("sealmq.openwire")

#: MessageAck types (ActiveMQ's ``MessageAck``).
DELIVERED_ACK, POISON_ACK, STANDARD_ACK, REDELIVERED_ACK = 0, 1, 2, 3
INDIVIDUAL_ACK, UNMATCHED_ACK, EXPIRED_ACK = 4, 5, 6
#: TransactionInfo types.
TX_BEGIN, TX_PREPARE, TX_COMMIT_ONE_PHASE, TX_COMMIT_TWO_PHASE = 0, 1, 2, 3
TX_ROLLBACK, TX_RECOVER, TX_FORGET, TX_END = 4, 5, 6, 7
#: DestinationInfo operations.
ADD_OPERATION, REMOVE_OPERATION = 0, 1
#: What a message's headers and framing add to its body, for write-buffer accounting.
_DISPATCH_OVERHEAD = 200
#: ActiveMQ's ``Message.DEFAULT_MINIMUM_MESSAGE_SIZE``: the client counts each message
#: as at least this plus its content and properties against its producer window, and
#: a ``ProducerAck`` must give back exactly what it counted.
_MINIMUM_MESSAGE_SIZE = 1024
#: A client may go silent this many times the negotiated inactivity period before it
#: is closed (ActiveMQ closes after one period without a read; the client writes a
#: KeepAliveInfo every third of one).
_INACTIVITY_GRACE = 1.5

_BODY_TYPES: dict[BodyKind, int] = {
    BodyKind.TEXT: Type.ACTIVEMQ_TEXT_MESSAGE,
    BodyKind.BYTES: Type.ACTIVEMQ_BYTES_MESSAGE,
    BodyKind.MAP: Type.ACTIVEMQ_MAP_MESSAGE,
    BodyKind.STREAM: Type.ACTIVEMQ_STREAM_MESSAGE,
    BodyKind.OBJECT: Type.ACTIVEMQ_OBJECT_MESSAGE,
    BodyKind.EMPTY: Type.ACTIVEMQ_MESSAGE,
}
_KINDS: dict[int, DestinationKind] = {
    Type.ACTIVEMQ_QUEUE: DestinationKind.QUEUE,
    Type.ACTIVEMQ_TOPIC: DestinationKind.TOPIC,
    Type.ACTIVEMQ_TEMP_QUEUE: DestinationKind.TEMP_QUEUE,
    Type.ACTIVEMQ_TEMP_TOPIC: DestinationKind.TEMP_TOPIC,
}
_TYPES: dict[DestinationKind, int] = {kind: type_code for type_code, kind in _KINDS.items()}
_I32 = struct.Struct(">i")


class _Refused(Exception):
    """A command the broker refuses: an ExceptionResponse carrying this Java exception."""

    def __init__(self, message: str, java_class: str = "javax.jms.JMSException") -> None:
        super().__init__(message)
        self.java_class = java_class


def _java_class(exc: BrokerError) -> str:
    """The Java exception a JMS client raises for a core refusal."""
    if isinstance(exc, AuthorizationError):
        return "java.lang.SecurityException"  # the client raises JMSSecurityException
    text = str(exc)
    if isinstance(exc, SubscriptionError) and "client id" in text:
        return "javax.jms.InvalidClientIDException"
    if "selector" in text.lower():
        return "javax.jms.InvalidSelectorException"
    return "javax.jms.JMSException"


# ----------------------------------------------------------------- per-broker state


class _Names:
    """Temporary destination names, OpenWire's (``<connection id>:<n>``, chosen by the
    client) to the core's (prefixed by the core connection's id), per broker."""

    def __init__(self) -> None:
        self.to_core: dict[str, str] = {}
        self.to_wire: dict[str, str] = {}

    def add(self, wire: str, core: str) -> None:
        self.to_core[wire] = core
        self.to_wire[core] = wire

    def discard(self, wire: str) -> None:
        core = self.to_core.pop(wire, None)
        if core is not None:
            self.to_wire.pop(core, None)


_NAMES: weakref.WeakKeyDictionary[Broker, _Names] = weakref.WeakKeyDictionary()
_NAMES_LOCK = threading.Lock()


def _names(broker: Broker) -> _Names:
    with _NAMES_LOCK:
        names = _NAMES.get(broker)
        if names is None:
            names = _NAMES[broker] = _Names()
        return names


# ----------------------------------------------------------------- ids


def _key(structure: Structure | None) -> str:
    """A session, consumer or producer id (or a transaction id) as one string."""
    if structure is None:
        return ""
    t = structure.type
    f = structure.fields  # read directly: these run for every message and every ack
    if t == Type.CONSUMER_ID or t == Type.PRODUCER_ID:
        return f"{f.get('connection_id')}:{f.get('session_id')}:{f.get('value')}"
    if t == Type.SESSION_ID:
        return f"{f.get('connection_id')}:{f.get('value')}"
    if t == Type.LOCAL_TRANSACTION_ID:
        connection = f.get("connection_id")
        return f"TX:{connection.value if connection is not None else ''}:{f.get('value')}"
    if t in (Type.CONNECTION_ID, Type.BROKER_ID):
        return str(f.get("value"))
    return repr(structure)


def _message_key(message_id: Structure | None) -> str:
    """A MessageId as the JMS client shows it (JMSMessageID)."""
    if message_id is None:
        return ""
    f = message_id.fields
    text = f.get("text_view")
    if text:
        return str(text)
    return f"{_key(f.get('producer_id'))}:{f.get('producer_sequence_id')}"


def _message_id(text: str, fallback_seq: int) -> Structure:
    """The MessageId a JMS client gets for JMSMessageID ``text``: producer id and
    sequence where the text is one a JMS producer made, else ``text`` itself."""
    parts = text.rsplit(":", 3)
    if len(parts) == 4 and all(p.lstrip("-").isdigit() for p in parts[1:]):
        connection, session, producer, seq = parts
        return Structure(
            Type.MESSAGE_ID,
            producer_id=Structure(
                Type.PRODUCER_ID,
                connection_id=connection,
                value=int(producer),
                session_id=int(session),
            ),
            producer_sequence_id=int(seq),
        )
    # Another protocol's message: the client's duplicate detection keys on producer
    # and sequence, so each message gets a sequence of its own under one producer.
    prefix, _, _ = text.rpartition("-")
    return Structure(
        Type.MESSAGE_ID,
        text_view=text,
        producer_id=Structure(
            Type.PRODUCER_ID, connection_id=prefix or text, value=0, session_id=0
        ),
        producer_sequence_id=fallback_seq,
    )


def _sequence(message_id: str) -> int:
    tail = message_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


# ----------------------------------------------------------------- properties


def _to_core_value(value: Any) -> PropertyValue:
    if isinstance(value, Typed):
        tag, raw = value.tag, value.value
        if tag == Typed.BYTE:
            return Byte(raw)
        if tag == Typed.SHORT:
            return Short(raw)
        if tag == Typed.INT:
            return Int(raw)
        if tag == Typed.FLOAT:
            return Float32(raw)
        return Char(raw)
    if isinstance(value, dict | list):
        raise _Refused("nested maps and lists are not supported in messages")
    return value  # type: ignore[no-any-return]


def _to_wire_value(value: PropertyValue) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Byte):
        return Typed(Typed.BYTE, int(value))
    if isinstance(value, Short):
        return Typed(Typed.SHORT, int(value))
    if isinstance(value, Int):
        return Typed(Typed.INT, int(value))
    if isinstance(value, Float32):
        return Typed(Typed.FLOAT, float(value))
    if isinstance(value, Char):
        return Typed(Typed.CHAR, str(value))
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return int(value)
        return str(value)
    if isinstance(value, float | bytes):
        return value
    return str(value)  # AMQP's symbols, uuids, decimals: as text, as ActiveMQ's bridge does


def _text_content(text: str) -> bytes:
    raw = java_utf(text)
    return _I32.pack(len(raw)) + raw


def _read_text_content(content: bytes) -> str:
    if len(content) < 4:
        raise _Refused("a text message's content is truncated")
    (length,) = _I32.unpack_from(content)
    if length != len(content) - 4:
        raise _Refused("a text message's content has a wrong length")
    return read_java_utf(memoryview(content)[4:])


def _inflate(type_code: int, content: bytes) -> bytes:
    """A compressed body (the client's ``useCompression``) as it was before."""
    try:
        if type_code == Type.ACTIVEMQ_BYTES_MESSAGE:
            # Bytes messages: the uncompressed length, then the deflated bytes.
            if len(content) < 4:
                raise _Refused("a compressed bytes message is truncated")
            (length,) = _I32.unpack_from(content)
            inflater = zlib.decompressobj()
            raw = inflater.decompress(content[4:], max(length, 0))
            if len(raw) != length:
                raise _Refused("a compressed bytes message has a wrong length")
            return raw
        return zlib.decompress(content)
    except zlib.error:
        raise _Refused("a compressed message body does not inflate") from None


# ----------------------------------------------------------------- consumers


@dataclass(eq=False, slots=True)
class _Consumer:
    """One OpenWire consumer: one core consumer per destination it names."""

    info: Structure
    key: str
    parts: list[Consumer] = field(default_factory=list)
    #: JMSMessageID -> (core consumer, core message id) of each delivery not settled.
    in_flight: dict[str, tuple[Consumer, str]] = field(default_factory=dict)
    #: A MessagePull waiting for a message (prefetch 0), and its timeout timer.
    pulling: bool = False
    pull_timer: asyncio.TimerHandle | None = None


class OpenWireSession:
    """One OpenWire connection: wire format, login, sessions, producers, consumers, acks,
    transactions, temporary destinations, keep-alives."""

    def __init__(
        self,
        broker: Broker,
        authenticator: Authenticator,
        *,
        max_frame_size: int,
        port: int = 0,
    ) -> None:
        self.broker = broker
        self.authenticator = authenticator
        self.codec = OpenWireCodec(max_frame_size=max_frame_size)
        self.link: Link | None = None
        self.connection: Connection | None = None
        self.wire_connection_id: Structure | None = None
        self._port = port
        self._names = _names(broker)
        self._events: deque[Structure] = deque()
        self._busy = False
        self._closing = False
        self._consumers: dict[str, _Consumer] = {}
        self._producer_windows: dict[str, int] = {}
        #: Per transaction, the deliveries it acknowledges: (consumer key, JMSMessageID).
        self._tx_acks: dict[str, dict[tuple[str, str], _Consumer]] = {}
        self._temp: set[str] = set()
        self._last_received = time.monotonic()
        self._last_sent = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._inactivity = 0.0

    # ----------------------------------------------------------------- driver side

    def connection_made(self, link: Link) -> None:
        self.link = link
        # Both peers send their WireFormatInfo at once (ActiveMQ's negotiator).
        self._send(self.codec.wire_format_info())

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_received = time.monotonic()
        try:
            self.codec.receive_data(data)
        except OpenWireError as exc:
            # The commands that came whole before the bad one are served first.
            self._events.extend(self.codec.events_received())
            self._process()
            self._events.clear()
            self._fatal(exc.message)
            return
        self._events.extend(self.codec.events_received())
        self._process()

    def eof_received(self) -> None:
        self._close_core()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_core()
        self._events.clear()
        with contextlib.suppress(OpenWireError):
            self.codec.receive_eof()
        self.link = None

    def data_to_send(self) -> list[bytes]:
        return self.codec.data_to_send()

    def pause_writing(self) -> None:
        for consumer in self._consumers.values():
            for part in consumer.parts:
                part.paused = True

    def resume_writing(self) -> None:
        if self.connection is None:
            return
        for consumer in list(self._consumers.values()):
            for part in consumer.parts:
                if not part.closed:
                    self.connection.resume(part)

    def shutdown(self, reason: str) -> None:
        if not self._closing:
            self._fatal(reason)

    def abort_slow_consumer(self, reason: str) -> None:
        self.shutdown(reason)

    def pending_frame_offset(self) -> int | None:
        return self.codec.pending_frame_offset

    def deadline_expired(self, reason: str) -> None:
        if not self._closing:
            self._fatal(reason)

    # ----------------------------------------------------------------- output

    def _send(self, command: Structure) -> None:
        if self.link is None:
            return
        try:
            size = self.codec.send(command)
        except ValueError as exc:
            log.warning("OpenWire: cannot encode %s: %s", name_of(command.type), exc)
            return
        self._last_sent = time.monotonic()
        self.link.schedule_flush(size)

    def _respond(self, command: Structure) -> None:
        if command.response_required:
            self._send(Structure(Type.RESPONSE, correlation_id=command.command_id))

    def _refuse(self, command: Structure, message: str, java_class: str) -> None:
        """An ExceptionResponse if the command asked for an answer, else a ConnectionError
        (ActiveMQ's answer to a failed one-way command: the connection goes on)."""
        error = Throwable(java_class, message)
        if command.response_required:
            self._send(
                Structure(
                    Type.EXCEPTION_RESPONSE, correlation_id=command.command_id, exception=error
                )
            )
        else:
            self._send(Structure(Type.CONNECTION_ERROR, exception=error))

    def _fatal(self, reason: str, java_class: str = "java.io.IOException") -> None:
        """A ConnectionError saying why, then close."""
        if self._closing:
            return
        log.info(
            "OpenWire connection from %s closed: %s", self.link.peer if self.link else "?", reason
        )
        self._send(
            Structure(
                Type.CONNECTION_ERROR,
                exception=Throwable(java_class, reason),
                connection_id=self.wire_connection_id,
            )
        )
        self._closing = True
        self._close_core()
        if self.link is not None:
            self.link.close()

    def _when_done(
        self, future: asyncio.Future[None] | None, then: Callable[[BaseException | None], None]
    ) -> None:
        """Run ``then`` once ``future`` (a durability confirmation) completes."""
        if future is None:
            then(None)
            return

        def done(f: asyncio.Future[None]) -> None:
            if self._closing or self.link is None:
                return
            exc = None if f.cancelled() else f.exception()
            then(exc)

        future.add_done_callback(done)

    # ----------------------------------------------------------------- keep-alive

    def _start_keepalive(self, inactivity_ms: int) -> None:
        if inactivity_ms <= 0 or self.link is None:
            return
        self._inactivity = inactivity_ms / 1000
        self._timer = self.link.call_later(self._inactivity / 3, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closing or self.link is None:
            return
        now = time.monotonic()
        if now - self._last_received > self._inactivity * _INACTIVITY_GRACE:
            self._fatal(f"Channel was inactive for too (>{int(self._inactivity * 1000)}) long")
            return
        if now - self._last_sent >= self._inactivity / 3:
            self._send(Structure(Type.KEEP_ALIVE_INFO))
        self._timer = self.link.call_later(self._inactivity / 3, self._tick)

    # ----------------------------------------------------------------- commands

    def _process(self) -> None:
        while self._events and not self._busy and not self._closing:
            command = self._events.popleft()
            try:
                self._handle(command)
            except _Refused as exc:
                self._refuse(command, str(exc), exc.java_class)
            except BrokerError as exc:
                self._refuse(command, str(exc), _java_class(exc))
            except OpenWireError as exc:
                self._fatal(exc.message)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # Well-formed bytes, but fields of the wrong kind for this command (an id
                # where a destination belongs): malformed input, not a broker failure.
                log.warning("OpenWire: malformed %s: %r", name_of(command.type), exc)
                self._fatal(f"malformed {name_of(command.type)}")

    def _handle(self, command: Structure) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("OpenWire << %r", command)
        t = command.type
        if t == Type.WIREFORMAT_INFO:
            negotiated = self.codec.negotiated
            assert negotiated is not None
            log.debug("OpenWire wire format negotiated: %s", negotiated)
            self._send(
                Structure(
                    Type.BROKER_INFO,
                    broker_id=Structure(Type.BROKER_ID, value=self.broker.broker_id),
                    broker_url=f"ssl://localhost:{self._port}",
                    broker_name=self.broker.broker_id,
                )
            )
            self._start_keepalive(negotiated.max_inactivity_ms)
            return
        if t == Type.KEEP_ALIVE_INFO:
            if command.response_required:
                self._send(Structure(Type.KEEP_ALIVE_INFO))
            return
        if self.connection is None:
            if t == Type.CONNECTION_INFO:
                self._connect(command)
                return
            if t == Type.CONNECTION_CONTROL:
                # The failover: transport says it is fault tolerant before it logs in.
                self._respond(command)
                return
            if t in (Type.SHUTDOWN_INFO, Type.REMOVE_INFO):
                self._closing = True
                if self.link is not None:
                    self.link.close()
                return
            self._fatal(f"{name_of(t)} received before ConnectionInfo")
            return
        if is_message(t):
            self._message_send(command)
        elif t == Type.MESSAGE_ACK:
            self._ack(command)
        elif t == Type.MESSAGE_PULL:
            self._pull(command)
        elif t == Type.CONSUMER_INFO:
            self._subscribe(command)
        elif t == Type.PRODUCER_INFO:
            self._producer(command)
        elif t == Type.SESSION_INFO:
            self._session(_key(command.session_id))
            self._respond(command)
        elif t == Type.TRANSACTION_INFO:
            self._transaction(command)
        elif t == Type.REMOVE_INFO:
            self._remove(command)
        elif t == Type.DESTINATION_INFO:
            self._destination_info(command)
        elif t == Type.REMOVE_SUBSCRIPTION_INFO:
            name = command.subcription_name
            if not name:
                raise _Refused("RemoveSubscriptionInfo names no subscription")
            self.connection.remove_durable(name)
            self._respond(command)
        elif t == Type.SHUTDOWN_INFO:
            self._closing = True
            self._close_core()
            if self.link is not None:
                self.link.close()
        elif t in (Type.CONNECTION_CONTROL, Type.CONSUMER_CONTROL, Type.FLUSH_COMMAND):
            self._respond(command)
        elif t == Type.CONNECTION_INFO:
            raise _Refused("this connection has already sent its ConnectionInfo")
        elif t in (Type.PARTIAL_COMMAND, Type.LAST_PARTIAL_COMMAND):
            self._fatal(f"{name_of(t)} is not supported (UDP transports only)")
        else:
            if command.response_required:
                raise _Refused(f"{name_of(t)} is not supported by this broker")
            self._fatal(f"{name_of(t)} is not supported by this broker")

    # ----------------------------------------------------------------- connection

    def _connect(self, info: Structure) -> None:
        self._busy = True
        assert self.link is not None
        self.link.pause_reading()
        task = asyncio.ensure_future(self._login(info))
        task.add_done_callback(_log_task_failure)

    async def _login(self, info: Structure) -> None:
        assert self.link is not None
        principal = await self.authenticator.authenticate_async(
            info.user_name, info.password, self.link.peer_certificate, self.link.peer
        )
        if self._closing or self.link is None:
            return
        if principal is None:
            log.info("OpenWire login refused for %r from %s", info.user_name, self.link.peer)
            self._refuse(
                info,
                f"User name [{info.user_name}] or password is invalid.",
                "java.lang.SecurityException",
            )
            self._closing = True
            self.link.close()
            return
        try:
            self.connection = self.broker.connect(
                client_id=info.client_id,
                principal=replace(principal, certificate=self.link.peer_certificate),
                peer=self.link.peer,
            )
        except BrokerError as exc:
            self._refuse(info, str(exc), _java_class(exc))
            self._closing = True
            self.link.close()
            return
        self.wire_connection_id = info.connection_id
        self.link.logged_in()
        self._respond(info)
        self._busy = False
        self.link.resume_reading()
        self._process()

    def _close_core(self) -> None:
        for consumer in self._consumers.values():
            if consumer.pull_timer is not None:
                consumer.pull_timer.cancel()
        self._consumers.clear()
        for wire in self._temp:
            self._names.discard(wire)
        self._temp.clear()
        if self.connection is not None:
            connection, self.connection = self.connection, None
            connection.close()

    def _session(self, key: str) -> CoreSession:
        assert self.connection is not None
        session = self.connection.sessions.get(key)
        if session is None:
            # The JMS client's advisory consumer uses a session it never announces.
            session = self.connection.create_session(key)
        return session

    # ----------------------------------------------------------------- destinations

    def _destination(self, structure: Structure | None) -> Destination:
        if structure is None:
            raise _Refused("no destination")
        kind = _KINDS.get(structure.type)
        name = structure.physical_name
        if kind is None or not name:
            raise _Refused(f"not a destination: {name_of(structure.type)}")
        if kind in (DestinationKind.TEMP_QUEUE, DestinationKind.TEMP_TOPIC):
            name = self._names.to_core.get(name, name)
        return Destination(kind, name)

    def _wire_destination(self, destination: Destination) -> Structure:
        name = destination.name
        if destination.is_temporary:
            name = self._names.to_wire.get(name, name)
        return Structure(_TYPES[destination.kind], physical_name=name)

    def _destination_info(self, info: Structure) -> None:
        assert self.connection is not None
        wire = info.destination
        if wire is None or wire.type not in _KINDS:
            raise _Refused("DestinationInfo names no destination")
        kind = _KINDS[wire.type]
        name = wire.physical_name or ""
        temporary = kind in (DestinationKind.TEMP_QUEUE, DestinationKind.TEMP_TOPIC)
        if info.operation_type == ADD_OPERATION and temporary:
            if kind is DestinationKind.TEMP_QUEUE:
                made = self.connection.create_temp_queue(name)
            else:
                made = self.connection.create_temp_topic(name)
            self._names.add(name, made.name)
            self._temp.add(name)
        elif info.operation_type == REMOVE_OPERATION and temporary:
            self.connection.delete_temp(self._destination(wire))
            self._names.discard(name)
            self._temp.discard(name)
        # Plain destinations are made by their first use.
        self._respond(info)

    # ----------------------------------------------------------------- producers

    def _producer(self, info: Structure) -> None:
        assert self.connection is not None
        key = _key(info.producer_id)
        session = self._session(_key_session(info.producer_id))
        destination = None if info.destination is None else self._destination(info.destination)
        if destination is not None and "," not in destination.name:
            # ActiveMQ refuses a producer its user may not write with (createProducer).
            self.connection.authorize(Permission.WRITE, destination)
        if key not in session.producers:
            session.create_producer(key, destination)
        if info.window_size and info.window_size > 0:
            self._producer_windows[key] = info.window_size
        self._respond(info)

    def _producer_of(self, key: str, session_key: str) -> Producer | None:
        assert self.connection is not None
        session = self.connection.sessions.get(session_key)
        return None if session is None else session.producers.get(key)

    def _message_send(self, wire: Structure) -> None:
        assert self.connection is not None
        message = self._to_core(wire)
        key = _key(wire.producer_id)
        transaction = None if wire.transaction_id is None else self._tx_key(wire.transaction_id)
        producer = self._producer_of(key, _key_session(wire.producer_id))
        if producer is not None:
            future = producer.send(message, transaction)
        else:
            future = self.connection.send(message, transaction)
        windowed = key in self._producer_windows and not wire.response_required
        if not wire.response_required and not windowed:
            if future is not None:
                future.add_done_callback(_consume_failure)
            return
        size = (
            _MINIMUM_MESSAGE_SIZE
            + len(wire.content or b"")
            + len(wire.marshalled_properties or b"")
        )

        def confirmed(exc: BaseException | None) -> None:
            if exc is not None:
                self._refuse(
                    wire, f"the message could not be stored: {exc}", "javax.jms.JMSException"
                )
            elif wire.response_required:
                self._respond(wire)
            if windowed:
                self._send(Structure(Type.PRODUCER_ACK, producer_id=wire.producer_id, size=size))

        self._when_done(future, confirmed)

    def _to_core(self, wire: Structure) -> Message:
        t = wire.type
        content = wire.content
        if content is not None and wire.compressed:
            content = _inflate(t, content)
        body = b""
        if t == Type.ACTIVEMQ_TEXT_MESSAGE:
            kind = BodyKind.TEXT
            if content:
                body = _read_text_content(content).encode("utf-8", "surrogatepass")
        elif t == Type.ACTIVEMQ_BYTES_MESSAGE:
            kind, body = BodyKind.BYTES, content or b""
        elif t == Type.ACTIVEMQ_MAP_MESSAGE:
            kind = BodyKind.MAP
            entries = decode_primitive_map(content) if content else {}
            body = encode_map({k: _to_core_value(v) for k, v in entries.items()})
        elif t == Type.ACTIVEMQ_STREAM_MESSAGE:
            kind = BodyKind.STREAM
            values = ow_decode_stream(content) if content else []
            body = encode_stream([_to_core_value(v) for v in values])
        elif t == Type.ACTIVEMQ_OBJECT_MESSAGE:
            kind, body = BodyKind.OBJECT, content or b""
        elif t == Type.ACTIVEMQ_MESSAGE:
            kind = BodyKind.EMPTY
        else:
            raise _Refused(f"{name_of(t)} is not supported (blob messages need a file server)")
        properties: dict[str, PropertyValue] = {}
        if wire.marshalled_properties:
            for name, value in decode_primitive_map(wire.marshalled_properties).items():
                properties[name] = _to_core_value(value)
        reply_to = None if wire.reply_to is None else self._destination(wire.reply_to)
        priority = wire.priority if 0 <= (wire.priority or 0) <= 9 else 4
        producer_key = _key(wire.producer_id)
        return Message(
            message_id="",
            destination=self._destination(wire.destination),
            body=body,
            body_kind=kind,
            persistent=bool(wire.persistent),
            priority=priority,
            expiration=max(wire.expiration or 0, 0),
            timestamp=max(wire.timestamp or 0, 0),
            correlation_id=wire.correlation_id,
            reply_to=reply_to,
            type=wire.jms_type,
            group_id=wire.group_id,
            group_seq=wire.group_sequence or 0,
            properties=properties,
            client_message_id=_message_key(wire.message_id) or None,
            producer_id=producer_key or None,
            producer_seq=(wire.message_id.producer_sequence_id or 0) if wire.message_id else 0,
        )

    # ----------------------------------------------------------------- consumers

    def _subscribe(self, info: Structure) -> None:
        assert self.connection is not None
        key = _key(info.consumer_id)
        if key in self._consumers:
            raise _Refused(f"consumer {key} already exists")
        destination = self._destination(info.destination)
        parts = [destination]
        if "," in destination.name and not destination.is_temporary:
            from sealmq.core.model import composite_parts

            try:
                parts = composite_parts(destination) or parts
            except ValueError as exc:
                raise _Refused(str(exc)) from None
        session = self._session(_key_session(info.consumer_id))
        consumer = _Consumer(info, key)
        prefetch = info.prefetch_size if (info.prefetch_size or 0) >= 0 else None
        durable = info.subscription_name if destination.is_topic else None
        options = SubscribeOptions(
            tag=consumer,
            ack_mode=AckMode.INDIVIDUAL,
            prefetch=prefetch,
            durable_name=durable,
            selector=info.selector,
            no_local=bool(info.no_local),
            priority=info.priority or 0,
            exclusive=bool(info.exclusive),
            browse=bool(info.browser),
            on_drained=self._drained,
            on_browse_end=self._browse_end,
        )
        try:
            for index, part in enumerate(parts):
                part_id = key if len(parts) == 1 else f"{key}#{index}"
                consumer.parts.append(session.subscribe(part_id, part, self, options))
        except BaseException:
            for made in consumer.parts:
                with contextlib.suppress(BrokerError):
                    session.unsubscribe(made.id)
            raise
        self._consumers[key] = consumer
        self._respond(info)

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Core callback: one message for one consumer, as a MessageDispatch."""
        state = consumer.tag
        assert isinstance(state, _Consumer)
        message = entry.message
        try:
            wire = self._to_wire(message, entry.redeliveries)
        except ValueError as exc:
            # A message OpenWire cannot carry (a property name over 64 KiB): dead-lettered
            # rather than redelivered to this consumer forever.
            log.warning("OpenWire cannot carry message %s: %s", message.message_id, exc)
            if self.connection is not None:
                self.connection.settle(consumer, message.message_id, Outcome.REJECTED)
            return
        key = _message_key(wire.message_id)
        state.in_flight[key] = (consumer, message.message_id)
        if state.pulling:
            state.pulling = False
            if state.pull_timer is not None:
                state.pull_timer.cancel()
                state.pull_timer = None
        self._send(
            Structure(
                Type.MESSAGE_DISPATCH,
                consumer_id=state.info.consumer_id,
                destination=state.info.destination,
                message=wire,
                redelivery_counter=entry.redeliveries,
            )
        )

    def _to_wire(self, message: Message, redeliveries: int) -> Structure:
        kind = message.body_kind
        body = message.body
        content: bytes | None
        if kind is BodyKind.TEXT:
            content = _text_content(body.decode("utf-8", "surrogateescape"))
        elif kind is BodyKind.MAP:
            try:
                entries = decode_map(body)
            except BodyFormatError:
                entries = {}
            content = encode_primitive_map({k: _to_wire_value(v) for k, v in entries.items()})
        elif kind is BodyKind.STREAM:
            try:
                values = decode_stream(body)
            except BodyFormatError:
                values = []
            content = ow_encode_stream([_to_wire_value(v) for v in values])
        elif kind is BodyKind.EMPTY:
            content = None
        else:
            content = body
        properties = {k: _to_wire_value(v) for k, v in message.properties.items()}
        text_id = id_text(message.client_message_id) if message.client_message_id else ""
        message_id = _message_id(text_id or message.message_id, _sequence(message.message_id))
        data_structure = None
        if message.destination.name.startswith("ActiveMQ.Advisory.") and message.body:
            data_structure = self._advisory_structure(message)
        correlation = message.correlation_id
        return Structure(
            Type.ACTIVEMQ_MESSAGE if data_structure is not None else _BODY_TYPES[kind],
            producer_id=message_id.producer_id,
            destination=self._wire_destination(message.destination),
            original_destination=(
                None
                if message.original_destination is None
                else self._wire_destination(message.original_destination)
            ),
            message_id=message_id,
            group_id=message.group_id,
            group_sequence=message.group_seq,
            correlation_id=None if correlation is None else id_text(correlation),
            persistent=message.persistent,
            expiration=message.expiration,
            priority=message.priority,
            reply_to=None if message.reply_to is None else self._wire_destination(message.reply_to),
            timestamp=message.timestamp,
            jms_type=message.type if message.type is not None else message.subject,
            content=content,
            marshalled_properties=encode_primitive_map(properties) if properties else None,
            data_structure=data_structure,
            redelivery_counter=redeliveries,
            # ActiveMQ sends userID (JMSXUserID) only with populateJMSXUserID: not here.
            broker_in_time=message.timestamp,
        )

    def _advisory_structure(self, message: Message) -> Structure | None:
        """ActiveMQ's advisories carry an OpenWire structure: what the JMS client reads
        of a temporary destination's creation or removal (``watchTopicAdvisories``)."""
        import json

        try:
            data = json.loads(message.body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        event = data.get("event")
        if event not in ("destination-created", "destination-removed"):
            return None
        text = str(data.get("destination", ""))
        for kind, prefix in (
            (DestinationKind.TEMP_QUEUE, "temp-queue://"),
            (DestinationKind.TEMP_TOPIC, "temp-topic://"),
            (DestinationKind.QUEUE, "queue://"),
            (DestinationKind.TOPIC, "topic://"),
        ):
            if text.startswith(prefix):
                destination = Destination(kind, text[len(prefix) :])
                break
        else:
            return None
        return Structure(
            Type.DESTINATION_INFO,
            destination=self._wire_destination(destination),
            operation_type=ADD_OPERATION if event == "destination-created" else REMOVE_OPERATION,
        )

    def _browse_end(self, consumer: Consumer) -> None:
        state = consumer.tag
        if isinstance(state, _Consumer):
            self._null_dispatch(state)

    def _drained(self, consumer: Consumer) -> None:
        state = consumer.tag
        if isinstance(state, _Consumer) and state.pulling:
            state.pulling = False
            self._null_dispatch(state)

    def _null_dispatch(self, state: _Consumer) -> None:
        """A dispatch without a message: the end of a browse, or of a pull's wait."""
        self._send(
            Structure(
                Type.MESSAGE_DISPATCH,
                consumer_id=state.info.consumer_id,
                destination=state.info.destination,
            )
        )

    def _pull(self, pull: Structure) -> None:
        assert self.connection is not None
        state = self._consumers.get(_key(pull.consumer_id))
        if state is None or not state.parts:
            self._respond(pull)
            return
        timeout = pull.timeout or 0
        if state.pulling:
            return
        state.pulling = True
        part = state.parts[0]
        self.connection.pull(part, 1, drain=timeout < 0)
        if timeout > 0 and state.pulling and self.link is not None:
            state.pull_timer = self.link.call_later(
                timeout / 1000, lambda: self._pull_expired(state)
            )

    def _pull_expired(self, state: _Consumer) -> None:
        state.pull_timer = None
        if not state.pulling or self.connection is None or not state.parts:
            return
        state.pulling = False
        self.connection.flow(state.parts[0], 0)
        self._null_dispatch(state)

    # ----------------------------------------------------------------- acks

    def _ack(self, ack: Structure) -> None:
        assert self.connection is not None
        state = self._consumers.get(_key(ack.consumer_id))
        if state is None:
            self._respond(ack)  # a consumer already closed: its messages went back
            return
        ack_type = ack.ack_type
        last = _message_key(ack.last_message_id)
        first = _message_key(ack.first_message_id) or last
        transaction = None if ack.transaction_id is None else self._tx_key(ack.transaction_id)
        keys = self._range(state, first, last)
        if ack_type in (STANDARD_ACK, INDIVIDUAL_ACK, UNMATCHED_ACK):
            # A standard ack covers everything delivered up to the last one (ActiveMQ's).
            keys = self._range(state, None, last) if ack_type == STANDARD_ACK else [last]
            if transaction is not None:
                self._ack_later(transaction, state, keys)
            else:
                self._settle(state, keys, Outcome.ACCEPTED, None)
        elif ack_type == DELIVERED_ACK:
            self._settle(state, self._range(state, None, last), Outcome.DELIVERED, None, keep=True)
        elif ack_type == REDELIVERED_ACK:
            self._settle(state, keys, Outcome.REDELIVERED, None, keep=True)
        elif ack_type == POISON_ACK:
            self._settle(state, keys, Outcome.REJECTED, None)
        elif ack_type == EXPIRED_ACK:
            self._settle(state, keys, Outcome.EXPIRED, None)
        else:
            raise _Refused(f"unknown acknowledgement type {ack_type}")
        self._respond(ack)

    def _ack_later(self, transaction: str, state: _Consumer, keys: list[str]) -> None:
        """Acks in a transaction are settled at its commit: on a rollback the JMS client
        redelivers them itself, so they stay with the consumer until then (as ActiveMQ)."""
        assert self.connection is not None
        if transaction not in self.connection.transactions:
            raise _Refused(f"transaction {transaction} is not active")
        pending = self._tx_acks.setdefault(transaction, {})
        for key in keys:
            if key in state.in_flight:
                pending[(state.key, key)] = state

    def _range(self, state: _Consumer, first: str | None, last: str) -> list[str]:
        """The deliveries from ``first`` (None: the oldest) to ``last``, in order."""
        if last not in state.in_flight:
            return []
        keys: list[str] = []
        started = first is None
        for key in state.in_flight:
            if not started and key == first:
                started = True
            if started:
                keys.append(key)
            if key == last:
                break
        return keys if keys else [last]

    def _settle(
        self,
        state: _Consumer,
        keys: list[str],
        outcome: Outcome,
        transaction: str | None,
        *,
        keep: bool = False,
    ) -> None:
        assert self.connection is not None
        for key in keys:
            held = state.in_flight.get(key)
            if held is None:
                continue
            consumer, message_id = held
            self.connection.settle(consumer, message_id, outcome, transaction=transaction)
            if not keep:
                del state.in_flight[key]

    # ----------------------------------------------------------------- transactions

    def _tx_key(self, transaction: Structure) -> str:
        if transaction.type != Type.LOCAL_TRANSACTION_ID:
            raise _Refused(
                "XA transactions are not supported by this broker",
                "javax.transaction.xa.XAException",
            )
        return _key(transaction)

    def _transaction(self, info: Structure) -> None:
        assert self.connection is not None
        if info.transaction_id is None:
            raise _Refused("TransactionInfo names no transaction")
        key = self._tx_key(info.transaction_id)
        kind = info.tx_type
        if kind == TX_BEGIN:
            self.connection.begin(key)
        elif kind == TX_COMMIT_ONE_PHASE:
            for (_, message_key), state in self._tx_acks.pop(key, {}).items():
                held = state.in_flight.pop(message_key, None)
                if held is not None:
                    self.connection.settle(held[0], held[1], Outcome.ACCEPTED, transaction=key)
            future = self.connection.commit(key)

            def committed(exc: BaseException | None) -> None:
                if exc is not None:
                    self._refuse(
                        info, f"the commit could not be stored: {exc}", "javax.jms.JMSException"
                    )
                else:
                    self._respond(info)

            self._when_done(future, committed)
            return
        elif kind == TX_ROLLBACK:
            self._tx_acks.pop(key, None)
            self.connection.abort(key)
        elif kind == TX_END:
            pass
        else:
            raise _Refused(
                "two-phase (XA) transactions are not supported by this broker",
                "javax.transaction.xa.XAException",
            )
        self._respond(info)

    # ----------------------------------------------------------------- removal

    def _remove(self, info: Structure) -> None:
        assert self.connection is not None
        target = info.object_id
        if target is None:
            raise _Refused("RemoveInfo names nothing")
        t = target.type
        if t == Type.CONSUMER_ID:
            state = self._consumers.pop(_key(target), None)
            if state is not None:
                if state.pull_timer is not None:
                    state.pull_timer.cancel()
                session = self.connection.sessions.get(_key_session(target))
                for part in state.parts:
                    if part.id in self.connection.consumers:
                        if session is not None:
                            session.unsubscribe(part.id)
                        else:
                            self.connection.unsubscribe(part.id)
        elif t == Type.PRODUCER_ID:
            producer = self._producer_of(_key(target), _key_session(target))
            if producer is not None:
                producer.close()
            self._producer_windows.pop(_key(target), None)
        elif t == Type.SESSION_ID:
            session = self.connection.sessions.get(_key(target))
            if session is not None:
                for consumer_key in [
                    k
                    for k, c in self._consumers.items()
                    if _key_session(c.info.consumer_id) == session.id
                ]:
                    del self._consumers[consumer_key]
                session.close()
        elif t == Type.CONNECTION_ID:
            self._respond(info)
            self._close_core()
            return
        self._respond(info)


def _key_session(structure: Structure | None) -> str:
    """The session key of a consumer or producer id."""
    if structure is None:
        return ""
    return f"{structure.connection_id}:{structure.session_id}"


def _consume_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("OpenWire: an asynchronous send failed: %s", future.exception())


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OpenWire login failed", exc_info=task.exception())
