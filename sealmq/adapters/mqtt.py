"""MQTT 3.1, 3.1.1 and 5.0 on the core, mapped the way ActiveMQ maps it.

Topic ``a/b/c`` is the core topic ``a.b.c`` (``.`` and ``/`` swap, so both
round-trip), ``+`` is ``*`` and ``#`` is ``>``. A persistent session's
subscriptions are durable subscriptions of the core named by their filter;
what else a session must remember across a broker restart (QoS 2 packet ids
awaiting PUBREL, PUBRELs not yet completed, its expiry) is kept as session
state in the store. See ``docs/mqtt.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from sealmq.adapters.base import Authenticator, Link
from sealmq.adapters.confirm import OrderedConfirmations
from sealmq.adapters.shared import SharedEncoding
from sealmq.core.authorization import Permission
from sealmq.core.broker import Broker, Connection, SubscribeOptions
from sealmq.core.clock import Timer
from sealmq.core.errors import AuthorizationError, BrokerError, LimitError, SessionOwnerError
from sealmq.core.model import (
    MQTT_ANNOTATION,
    BodyKind,
    Destination,
    DurableSubscriptionInfo,
    Message,
    PropertyValue,
    id_text,
)
from sealmq.core.queues import AckMode, Consumer, Entry
from sealmq.wire.mqtt import (
    DEFAULT_MAX_CONNECT_SIZE,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MqttCodec,
    MqttError,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    ReasonCode,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = ["MqttService", "MqttSession", "core_topic", "mqtt_topic"]

log = logging.getLogger("sealmq.mqtt")

#: A client silent for this many keep-alive periods is disconnected (MQTT 3.1.2.10: 1.5).
KEEP_ALIVE_GRACE = 1.5
#: QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker (our Receive
#: Maximum; the spec's default and maximum is 65535, Mosquitto's default 20).
SERVER_RECEIVE_MAXIMUM = 1024
#: Topic aliases a client may set up towards the broker (Mosquitto: 10).
SERVER_TOPIC_ALIAS_MAXIMUM = 64
#: Longest keep-alive a client may ask for, in seconds. An MQTT 5 client asking for more,
#: or for none (0), is told this one as Server Keep Alive; a 3.1/3.1.1 client asking for
#: more is refused. 65535 is the protocol's ceiling and mosquitto's default max_keepalive.
MAX_KEEP_ALIVE = 65535
#: v5 Session Expiry Interval meaning "never expires".
NEVER_EXPIRES = 0xFFFFFFFF
SESSION_KEY_PREFIX = "mqtt:"
#: About how many bytes a PUBLISH adds to its payload and topic, for flow control.
_PUBLISH_OVERHEAD = 16
_OPTIONS = struct.Struct(">BBI")  # qos, flags, subscription identifier
_NO_LOCAL, _RETAIN_AS_PUBLISHED = 0x01, 0x02


def core_topic(topic: str) -> str:
    """MQTT topic or filter -> ActiveMQ name (``/`` and ``.`` swap, ``+`` is ``*``, ``#`` ``>``).

    ``+`` and ``#`` only ever stand for whole levels (the codec checks filters, and
    topic names have none); a ``*`` or ``>`` inside a level stays a literal character.
    """
    return topic.translate(_TO_CORE)


def mqtt_topic(name: str) -> str:
    """ActiveMQ topic name (never a wildcard) -> MQTT topic name: ``.`` and ``/`` swap.

    The inverse of :func:`core_topic` for topic names. A name holding ``+`` or ``#``
    has no MQTT form: the codec refuses to send it.
    """
    return name.translate(_TO_MQTT)


_TO_CORE = str.maketrans({"/": ".", ".": "/", "+": "*", "#": ">"})
_TO_MQTT = str.maketrans({".": "/", "/": "."})


@dataclass(slots=True)
class _Sub:
    """One subscription of this session, by its filter."""

    filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    identifier: int = 0
    consumer: Consumer | None = None
    #: Deliveries made before this subscription's SUBACK went out; sent right after it
    #: (a retained message must not overtake the SUBACK).
    held: list[Entry] | None = None

    def options(self) -> bytes:
        flags = (_NO_LOCAL if self.no_local else 0) | (
            _RETAIN_AS_PUBLISHED if self.retain_as_published else 0
        )
        return _OPTIONS.pack(self.qos, flags, self.identifier)

    @classmethod
    def from_info(cls, info: DurableSubscriptionInfo) -> _Sub:
        qos, flags, identifier = _OPTIONS.unpack(info.options)
        return cls(
            info.name,
            qos,
            no_local=bool(flags & _NO_LOCAL),
            retain_as_published=bool(flags & _RETAIN_AS_PUBLISHED),
            identifier=identifier,
        )


@dataclass(slots=True)
class _Outbound:
    """A QoS 1/2 PUBLISH sent to the client and not yet completed."""

    consumer: Consumer | None
    message_id: str
    qos: int
    released: bool = False  # QoS 2: PUBREC came, PUBREL sent, waiting for PUBCOMP


@dataclass(slots=True)
class _SessionState:
    """What a persistent session keeps in the store (JSON inside the sealed record)."""

    expiry: int = NEVER_EXPIRES  # seconds after disconnect
    disconnected_at: int = 0  # ms since epoch; 0 while connected
    inbound_qos2: list[int] = field(default_factory=list)
    pubrel: list[int] = field(default_factory=list)
    #: Message id -> packet id of the PUBLISHes unacknowledged when the connection
    #: ended, so that they are resent with their original packet ids [MQTT-4.4.0-1].
    outbound: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "expiry": self.expiry,
                "disconnected_at": self.disconnected_at,
                "inbound_qos2": self.inbound_qos2,
                "pubrel": self.pubrel,
                "outbound": self.outbound,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _SessionState:
        raw = json.loads(data)
        return cls(
            int(raw.get("expiry", NEVER_EXPIRES)),
            int(raw.get("disconnected_at", 0)),
            [int(x) for x in raw.get("inbound_qos2", [])],
            [int(x) for x in raw.get("pubrel", [])],
            {str(k): int(v) for k, v in raw.get("outbound", {}).items()},
        )


_ACKS = (Puback, Pubrec, Pubrel, Pubcomp, Suback, Unsuback)
#: An answer waiting for durability: the packet to send, then what to do after it.
_PendingAck = tuple[Packet | None, Callable[[], None] | None]


#: A subscription with nothing particular (QoS 0, no identifier), for shared PUBLISHes.
_NO_SUB = _Sub("", 0)


class MqttService:
    """What MQTT sessions of one broker share: session expiry and delayed wills."""

    def __init__(
        self,
        broker: Broker,
        authenticator: Authenticator,
        *,
        max_packet_size: int,
        max_connect_size: int = DEFAULT_MAX_CONNECT_SIZE,
        default_prefetch: int = 1000,
    ) -> None:
        self.broker = broker
        self.authenticator = authenticator
        self.max_packet_size = max_packet_size
        self.max_connect_size = max_connect_size
        self.default_prefetch = default_prefetch
        # On the broker's clock, so a fake clock drives session expiry and delayed wills.
        self._expiry_timers: dict[str, Timer] = {}
        self._will_timers: dict[str, Timer] = {}
        #: QoS 0 PUBLISH bytes of the last message fanned out, by (protocol level,
        #: retain flag): encoded for its first subscriber, reused by the rest.
        self.shared = SharedEncoding()

    def start(self) -> None:
        """Schedule the expiry of the persistent sessions found in the store."""
        now = self.broker.now_ms()
        for key, data in list(self.broker.sessions.items()):
            if not key.startswith(SESSION_KEY_PREFIX):
                continue
            try:
                state = _SessionState.decode(data)
            except (ValueError, TypeError, AttributeError):
                continue
            if state.expiry == NEVER_EXPIRES:
                continue
            since = state.disconnected_at or now
            remaining = max(0.0, (since + state.expiry * 1000 - now) / 1000)
            self.schedule_expiry(key[len(SESSION_KEY_PREFIX) :], remaining)

    def session(self) -> MqttSession:
        return MqttSession(self)

    def close(self) -> None:
        """Cancel the expiry and delayed-will timers; call before closing the broker.

        Expiry resumes from the stored state at the next start; a delayed will still
        pending is not published (see docs/mqtt.md).
        """
        for timer in [*self._expiry_timers.values(), *self._will_timers.values()]:
            timer.cancel()
        self._expiry_timers.clear()
        self._will_timers.clear()

    def schedule_expiry(self, client_id: str, seconds: float) -> None:
        self.cancel_expiry(client_id)
        self._expiry_timers[client_id] = self.broker.clock.call_later(
            seconds, functools.partial(self.expire, client_id)
        )

    def cancel_expiry(self, client_id: str) -> None:
        timer = self._expiry_timers.pop(client_id, None)
        if timer is not None:
            timer.cancel()

    def expire(self, client_id: str) -> None:
        """Forget a session: its subscriptions, queued messages and state."""
        self._expiry_timers.pop(client_id, None)
        if self.broker.is_connected(client_id):
            return
        self.discard_session(client_id)

    def discard_session(self, client_id: str) -> None:
        for info in self.broker.durable_subscriptions(client_id):
            with contextlib.suppress(BrokerError):
                self.broker.remove_durable(client_id, info.name)
        if SESSION_KEY_PREFIX + client_id in self.broker.sessions:
            self.broker.set_session_state(SESSION_KEY_PREFIX + client_id, None)
        self.broker.release_session(client_id)

    def schedule_will(self, client_id: str, delay: float, will: Message, user: str | None) -> None:
        self.cancel_will(client_id)
        self._will_timers[client_id] = self.broker.clock.call_later(
            delay, functools.partial(self._send_will, client_id, will, user)
        )

    def cancel_will(self, client_id: str) -> None:
        timer = self._will_timers.pop(client_id, None)
        if timer is not None:
            timer.cancel()

    def _send_will(self, client_id: str, will: Message, user: str | None) -> None:
        self._will_timers.pop(client_id, None)
        self.publish_will(will, user)

    def publish_will(self, will: Message, user: str | None) -> None:
        """Send ``will`` on behalf of ``user``, the user of the connection that set it."""
        try:
            self.broker.send(will, retain=_published_retained(will), user=user)
        except BrokerError as exc:
            log.info("will message not published: %s", exc)


class MqttSession:
    """One MQTT connection."""

    def __init__(self, service: MqttService) -> None:
        self.service = service
        self.broker = service.broker
        self.codec = MqttCodec(
            server=True,
            max_packet_size=service.max_packet_size,
            max_connect_size=service.max_connect_size,
        )
        self.link: Link | None = None
        self.connection: Connection | None = None
        self.level = 4
        self.client_id = ""
        self.persistent = False
        self.session_expiry = 0
        self.keep_alive = 0
        self.will: Will | None = None
        #: The user the core connection was opened for: the will is sent as that user.
        self.username: str | None = None
        self._closing = False
        self._connecting = False
        self._events: deque[Packet] = deque()
        self._subs: dict[str, _Sub] = {}
        self._outbound: dict[int, _Outbound] = {}
        self._next_id = 1
        self._state = _SessionState()
        self._acks: OrderedConfirmations[_PendingAck] = OrderedConfirmations(
            self._release_ack, self._ack_failed
        )
        self._aliases_in: dict[int, str] = {}
        self._aliases_out: dict[str, int] = {}
        self._client_alias_max = 0
        self._receive_max = 65535
        #: Packet ids to reuse for redelivered messages (see ``_SessionState.outbound``).
        self._resend_ids: dict[str, int] = {}
        #: The transport cannot take more / the client's Receive Maximum is reached.
        self._write_paused = False
        self._window_full = False
        #: QoS 1/2 deliveries waiting for the client's Receive Maximum to let them out.
        self._backlog: deque[tuple[Consumer, Entry, int]] = deque()
        #: v5 Request Problem Information: False keeps Reason Strings off acknowledgements.
        self._problem_info = True
        self._last_received = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- driver side

    def connection_made(self, link: Link) -> None:
        # The driver closes a connection not logged in by its login deadline.
        self.link = link

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_received = time.monotonic()
        try:
            self.codec.receive_data(data)
        except MqttError as exc:
            self._events.extend(self.codec.events_received())
            self._process()
            self._protocol_error(exc.reason_code, exc.message)
            return
        self._events.extend(self.codec.events_received())
        self._process()

    def eof_received(self) -> None:
        self._close(abnormal=True)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._close(abnormal=True)
        # Free a part-received packet now: session and driver refer to each other, so
        # without this it would wait for the cyclic GC (up to mqtt_max_packet_size each).
        with contextlib.suppress(MqttError):
            self.codec.receive_eof()
        self.link = None

    def data_to_send(self) -> list[bytes]:
        return self.codec.data_to_send()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_flow()

    def _update_flow(self) -> None:
        """Pause consumers while the transport is full, and those of QoS 1/2 subscriptions
        while the client's Receive Maximum of unacknowledged PUBLISHes is reached."""
        self._window_full = len(self._outbound) >= self._receive_max
        connection = self.connection
        for sub in list(self._subs.values()):
            consumer = sub.consumer
            if consumer is None or consumer.closed:
                continue
            paused = self._write_paused or (self._window_full and sub.qos > 0)
            if paused:
                consumer.paused = True
            elif consumer.paused and connection is not None:
                connection.resume(consumer)

    def shutdown(self, reason: str) -> None:
        if self._closing:
            return
        if self.level == 5 and self.connection is not None:
            self._send(
                Disconnect(ReasonCode.SERVER_SHUTTING_DOWN, Properties(reason_string=reason[:100]))
            )
        self._close(abnormal=True)

    def abort_slow_consumer(self, reason: str) -> None:
        if self._closing:
            return
        if self.level == 5 and self.connection is not None:
            # No reason code names a slow consumer; a limit the server imposes is 0x97.
            self._send(
                Disconnect(ReasonCode.QUOTA_EXCEEDED, Properties(reason_string=reason[:100]))
            )
        self._close(abnormal=True)

    def pending_frame_offset(self) -> int | None:
        return self.codec.pending_frame_offset

    def deadline_expired(self, reason: str) -> None:
        # Before CONNACK there is nothing to answer with (Mosquitto just closes too).
        if self._closing:
            return
        if self.level == 5 and self.connection is not None:
            self._send(Disconnect(ReasonCode.UNSPECIFIED_ERROR, Properties(reason_string=reason)))
        self._close(abnormal=True)

    # ----------------------------------------------------------------- packets

    def _process(self) -> None:
        while self._events and not self._connecting and not self._closing:
            packet = self._events.popleft()
            try:
                self._handle(packet)
            except MqttError as exc:
                self._protocol_error(exc.reason_code, exc.message)
            except BrokerError as exc:
                self._protocol_error(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, str(exc))

    def _handle(self, packet: Packet) -> None:
        if self.connection is None:
            if isinstance(packet, Connect):
                self._connect(packet)
                return
            raise MqttError(ReasonCode.PROTOCOL_ERROR, "the first packet must be CONNECT")
        kind = type(packet)
        if kind is Publish:
            self._publish(packet)  # type: ignore[arg-type]
        elif kind is Puback:
            self._puback(packet)  # type: ignore[arg-type]
        elif kind is Pubrec:
            self._pubrec(packet)  # type: ignore[arg-type]
        elif kind is Pubrel:
            self._pubrel(packet)  # type: ignore[arg-type]
        elif kind is Pubcomp:
            self._pubcomp(packet)  # type: ignore[arg-type]
        elif kind is Subscribe:
            self._subscribe(packet)  # type: ignore[arg-type]
        elif kind is Unsubscribe:
            self._unsubscribe(packet)  # type: ignore[arg-type]
        elif kind is Pingreq:
            self._send(Pingresp())
        elif kind is Disconnect:
            self._disconnect(packet)  # type: ignore[arg-type]
        elif kind is Auth:
            raise MqttError(ReasonCode.PROTOCOL_ERROR, "no authentication exchange is in progress")
        else:
            raise MqttError(ReasonCode.PROTOCOL_ERROR, f"unexpected {kind.__name__} packet")

    # ----------------------------------------------------------------- connect

    def _connect(self, packet: Connect) -> None:
        self.level = packet.protocol_level
        props = packet.properties
        if props.authentication_method is not None:
            self._refuse(
                ReasonCode.BAD_AUTHENTICATION_METHOD, "authentication methods are not supported"
            )
            return
        client_id = packet.client_id
        assigned = False
        if not client_id:
            if self.level == 5 or (self.level == 4 and packet.clean_start):
                client_id = "sealmq-" + secrets.token_hex(8)
                assigned = True
            else:
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "a client id is required")
                return
        self.client_id = client_id
        if self.level == 5:
            self.session_expiry = props.session_expiry_interval or 0
            self.persistent = self.session_expiry > 0
        else:
            self.persistent = not packet.clean_start
            self.session_expiry = 0 if packet.clean_start else NEVER_EXPIRES
        self.keep_alive = packet.keep_alive
        if self.keep_alive > MAX_KEEP_ALIVE or (self.level == 5 and self.keep_alive == 0):
            if self.level != 5:
                # 3.1/3.1.1 clients cannot be told a shorter keep-alive (mosquitto's answer).
                self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "keep alive too long")
                return
            self.keep_alive = MAX_KEEP_ALIVE
        self.will = packet.will
        self._client_alias_max = props.topic_alias_maximum or 0
        if props.maximum_packet_size:
            self.codec.peer_max_packet_size = props.maximum_packet_size
        self._receive_max = props.receive_maximum or 65535
        self._problem_info = props.request_problem_information != 0
        self._connecting = True
        assert self.link is not None
        self.link.pause_reading()
        task = asyncio.ensure_future(self._login(packet, assigned))
        task.add_done_callback(_log_task_failure)

    async def _login(self, packet: Connect, assigned: bool) -> None:
        password: bytes | None = packet.password
        assert self.link is not None
        principal = await self.service.authenticator.authenticate_async(
            packet.username,
            password.decode("utf-8", "replace") if password is not None else None,
            self.link.peer_certificate,
            self.link.peer,
        )
        if self._closing or self.link is None:
            return
        if principal is None:
            log.info("MQTT login refused for %r from %s", packet.username, self.link.peer)
            self._refuse(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "bad user name or password")
            return
        service = self.service
        client_id = self.client_id
        try:
            self.connection = self.broker.connect(
                client_id=client_id,
                principal=replace(principal, certificate=self.link.peer_certificate),
                takeover=True,
                peer=self.link.peer,
            )
            self.username = packet.username
        except SessionOwnerError:
            # Another user's session: refused, and it stays as it is (0x05 in 3.1.1).
            log.info("MQTT client id of another user's session refused from %s", self.link.peer)
            self._refuse(ReasonCode.NOT_AUTHORIZED, "the client id is in use by another user")
            return
        except LimitError as exc:
            # A connection limit (logged by the core): 0x97 quota exceeded; 3.1.1 has only
            # "server unavailable" (3).
            code = ReasonCode.QUOTA_EXCEEDED if self.level == 5 else ReasonCode.SERVER_UNAVAILABLE
            self._refuse(code, str(exc))
            return
        self.connection.on_taken_over = self._taken_over
        if self.will is not None and not self._will_allowed(self.will):
            return
        service.cancel_expiry(client_id)
        service.cancel_will(client_id)
        key = SESSION_KEY_PREFIX + client_id
        durable = self.broker.durable_subscriptions(client_id)
        stored = self.broker.sessions.get(key)
        if packet.clean_start:
            if durable or stored is not None:
                service.discard_session(client_id)
            durable, stored = [], None
        session_present = bool(durable or stored is not None) and not packet.clean_start
        if session_present:
            # A v5 client resuming with Session Expiry 0 still takes over what the session
            # kept (its durable subscriptions); the session then ends with the connection.
            self.persistent = True
        if stored is not None:
            try:
                self._state = _SessionState.decode(stored)
            except (ValueError, TypeError, AttributeError):
                self._state = _SessionState()
        self._resend_ids, self._state.outbound = self._state.outbound, {}
        self._state.expiry = self.session_expiry
        self._state.disconnected_at = 0
        if self.persistent:
            self.broker.set_session_state(key, self._state.encode())
            self.broker.claim_session(client_id, principal.username)
        props = Properties()
        if self.level == 5:
            props = Properties(
                assigned_client_identifier=client_id if assigned else None,
                server_keep_alive=self.keep_alive if self.keep_alive != packet.keep_alive else None,
                receive_maximum=SERVER_RECEIVE_MAXIMUM,
                topic_alias_maximum=SERVER_TOPIC_ALIAS_MAXIMUM,
                maximum_packet_size=min(self.service.max_packet_size, 268_435_455),
                retain_available=1,
                wildcard_subscription_available=1,
                subscription_identifier_available=1,
                shared_subscription_available=1,
            )
        self._send(Connack(session_present, ReasonCode.SUCCESS, props))
        self.link.logged_in()
        if self.keep_alive:
            self._timer = self.link.call_later(self.keep_alive * KEEP_ALIVE_GRACE, self._keep_alive)
        # Resume the session: its subscriptions (redelivering what was in flight, with DUP)
        # and the PUBRELs of QoS 2 deliveries that were not completed.
        for pid in self._state.pubrel:
            self._outbound[pid] = _Outbound(None, "", 2, released=True)
            self._send(Pubrel(pid))
        for info in durable:
            sub = _Sub.from_info(info)
            # A subscription the map no longer allows stays stored, unserved (the core
            # logs the refusal); the client may unsubscribe it.
            with contextlib.suppress(AuthorizationError, LimitError):
                self._attach(sub, Destination.topic(info.destination.name), retained=False)
        self._connecting = False
        self.link.resume_reading()
        self._process()

    def _will_allowed(self, will: Will) -> bool:
        """The will is published for this user later, when nobody is there to refuse:
        its topic is checked now, and a CONNECT whose will may not be published is
        refused as not authorized (as Mosquitto does)."""
        connection = self.connection
        assert connection is not None
        try:
            connection.authorize(Permission.WRITE, Destination.topic(core_topic(will.topic)))
        except AuthorizationError:
            # Closed here, before its session is touched: the refusal leaves it as it was.
            self.will = None
            self.connection = None
            connection.close()
            self._refuse(ReasonCode.NOT_AUTHORIZED, "not authorized to publish the will message")
            return False
        return True

    def _refuse(self, code: int, reason: str) -> None:
        props = Properties(reason_string=reason) if self.level == 5 else Properties()
        with contextlib.suppress(MqttError):
            self.codec.send(Connack(False, code, props))
        self._flush()
        self._close(abnormal=False)

    def _taken_over(self) -> None:
        """A newer connection with our client id took the session."""
        self.connection = None
        if self.level == 5:
            self._send(
                Disconnect(
                    ReasonCode.SESSION_TAKEN_OVER,
                    Properties(reason_string="another connection took the session"),
                )
            )
        self._close(abnormal=True, core_closed=True)

    def _keep_alive(self) -> None:
        self._timer = None
        if self._closing or self.link is None:
            return
        idle = time.monotonic() - self._last_received
        limit = self.keep_alive * KEEP_ALIVE_GRACE
        if idle >= limit:
            log.info("MQTT client %s missed its keep-alive; closing", self.client_id)
            if self.level == 5:
                self._send(
                    Disconnect(
                        ReasonCode.KEEP_ALIVE_TIMEOUT,
                        Properties(reason_string="nothing received for 1.5 keep-alives"),
                    )
                )
            self._close(abnormal=True)
            return
        self._timer = self.link.call_later(limit - idle, self._keep_alive)

    # ----------------------------------------------------------------- publish (inbound)

    def _publish(self, packet: Publish) -> None:
        connection = self.connection
        assert connection is not None
        topic = packet.topic
        props = packet.properties
        if props.topic_alias is not None:
            alias = props.topic_alias
            if alias == 0 or alias > SERVER_TOPIC_ALIAS_MAXIMUM:
                raise MqttError(ReasonCode.TOPIC_ALIAS_INVALID, "topic alias out of range")
            if topic:
                self._aliases_in[alias] = topic
            else:
                known = self._aliases_in.get(alias)
                if known is None:
                    raise MqttError(ReasonCode.PROTOCOL_ERROR, "unknown topic alias")
                topic = known
        qos = packet.qos
        pid = packet.packet_id
        if qos == 2 and pid in self._state.inbound_qos2:
            # A resend before PUBREL: already taken, do not deliver twice.
            self._ack(None, Pubrec(pid))
            return
        # QoS 2 PUBLISHes count against our Receive Maximum until PUBCOMP, QoS 1 ones until
        # their PUBACK (sent once stored).
        if qos and self._acks.waiting + len(self._state.inbound_qos2) >= SERVER_RECEIVE_MAXIMUM:
            raise MqttError(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")
        if _has_core_wildcard(topic):
            # A level "*" or ">" would be a wildcard in the core: no such topic can exist.
            self._refuse_publish(packet, ReasonCode.TOPIC_NAME_INVALID, "topic name not allowed")
            return
        message = self._message(topic, packet)
        try:
            future = connection.send(message, retain=packet.retain)
        except AuthorizationError as exc:
            self._publish_denied(packet, str(exc))
            return
        except LimitError as exc:
            # MQTT 5: a negative PUBACK/PUBREC; 3.1.1 cannot say why: closed (3.3.5).
            log.info("MQTT publish from %s refused: %s", self.link and self.link.peer, exc)
            self._refuse_publish(packet, ReasonCode.QUOTA_EXCEEDED, _reason(str(exc)))
            return
        reason = ReasonCode.SUCCESS
        if self.level == 5 and qos and not self.broker.has_subscribers(message):
            # MQTT 5 3.4.2.1: accepted, but nobody subscribes (a retained copy does not count).
            reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
        if qos == 1:
            self._ack(future, Puback(pid, reason))
        elif qos == 2:
            self._state.inbound_qos2.append(pid)
            self._save_state()
            # The PUBREC promises exactly once: wait until the packet id is stored too.
            self._ack(self.broker.pending_write() or future, Pubrec(pid, reason))

    def _publish_denied(self, packet: Publish, reason: str) -> None:
        """A PUBLISH the authorization map refuses (the core has logged who and what).

        QoS 0: dropped. MQTT 5: PUBACK/PUBREC 0x87 (not authorized). MQTT 3.1.1 has no
        negative PUBACK and lets the server either acknowledge or close (3.3.5); like
        Mosquitto, the message is dropped and acknowledged, so that a client does not
        reconnect and resend it forever.
        """
        if packet.qos == 0:
            return
        if self.level == 5:
            self._refuse_publish(packet, ReasonCode.NOT_AUTHORIZED, _reason(reason))
            return
        pid = packet.packet_id
        if packet.qos == 1:
            self._ack(None, Puback(pid))
            return
        self._state.inbound_qos2.append(pid)
        self._save_state()
        self._ack(self.broker.pending_write(), Pubrec(pid))

    def _refuse_publish(self, packet: Publish, code: int, reason: str) -> None:
        """Refuse a PUBLISH: a negative PUBACK/PUBREC in MQTT 5, else close (3.3.5)."""
        if self.level != 5 or packet.qos == 0:
            raise MqttError(code, reason)
        props = Properties(reason_string=reason)
        kind = Puback if packet.qos == 1 else Pubrec
        self._ack(None, kind(packet.packet_id, code, props))

    def _message(self, topic: str, packet: Publish) -> Message:
        props = packet.properties
        properties: dict[str, PropertyValue] = {}
        for name, value in props.user_properties:
            properties.setdefault(name, value)
        correlation_id: str | bytes | None = None
        if props.correlation_data is not None:
            try:
                correlation_id = props.correlation_data.decode()
            except UnicodeDecodeError:
                correlation_id = props.correlation_data  # a binary id
        expiry = props.message_expiry_interval
        qos = packet.qos
        return Message(
            message_id="",  # the core stamps id, timestamp and user at send
            destination=Destination.topic(core_topic(topic)),
            body=packet.payload,
            body_kind=BodyKind.TEXT if props.payload_format_indicator == 1 else BodyKind.BYTES,
            persistent=packet.qos > 0,
            expiration=self.broker.now_ms() + expiry * 1000 if expiry is not None else 0,
            correlation_id=correlation_id,
            reply_to=Destination.topic(core_topic(props.response_topic))
            if props.response_topic
            else None,
            properties=properties,
            content_type=props.content_type,
            # QoS 0 and 1 are what ``persistent`` says; QoS 2 and retain need the annotation.
            annotations=_annotations(qos, packet.retain) if qos == 2 or packet.retain else None,
        )

    def _pubrel(self, packet: Pubrel) -> None:
        pid = packet.packet_id
        if pid in self._state.inbound_qos2:
            self._state.inbound_qos2.remove(pid)
            self._save_state()
            self._ack(self.broker.pending_write(), Pubcomp(pid))
        else:
            self._ack(None, _not_found(Pubcomp, pid, self.level))

    def _save_state(self) -> None:
        if self.persistent:
            self.broker.set_session_state(SESSION_KEY_PREFIX + self.client_id, self._state.encode())

    # ----------------------------------------------------------------- acks (outbound flow)

    def _puback(self, packet: Puback) -> None:
        out = self._outbound.get(packet.packet_id)
        if out is None or out.qos != 1:
            return  # unknown or not a QoS 1 delivery: nothing to acknowledge
        del self._outbound[packet.packet_id]
        if out.consumer is not None and self.connection is not None:
            self.connection.ack(out.consumer, out.message_id, cumulative=False, transaction=None)
        self._window_opened()

    def _window_opened(self) -> None:
        while self._backlog and len(self._outbound) < self._receive_max:
            consumer, entry, qos = self._backlog.popleft()
            if not consumer.closed and isinstance(consumer.tag, _Sub):
                self._deliver_now(consumer, entry, consumer.tag, qos)
        if self._window_full and len(self._outbound) < self._receive_max:
            self._update_flow()

    def _pubrec(self, packet: Pubrec) -> None:
        pid = packet.packet_id
        out = self._outbound.get(pid)
        if out is None or out.qos != 2:
            self._send(_not_found(Pubrel, pid, self.level))
            return
        if packet.reason_code >= 0x80:
            # The client refused the message (v5): it is done with.
            del self._outbound[pid]
            if out.consumer is not None and self.connection is not None:
                self.connection.ack(
                    out.consumer, out.message_id, cumulative=False, transaction=None
                )
            self._window_opened()
            return
        if not out.released:
            out.released = True
            if out.consumer is not None and self.connection is not None:
                self.connection.ack(
                    out.consumer, out.message_id, cumulative=False, transaction=None
                )
            self._state.pubrel.append(pid)
            self._save_state()
        self._ack(self.broker.pending_write(), Pubrel(pid))

    def _pubcomp(self, packet: Pubcomp) -> None:
        pid = packet.packet_id
        out = self._outbound.get(pid)
        if out is not None and out.released:
            del self._outbound[pid]
            if pid in self._state.pubrel:
                self._state.pubrel.remove(pid)
                self._save_state()
            self._window_opened()

    # ----------------------------------------------------------------- subscribe

    def _subscribe(self, packet: Subscribe) -> None:
        connection = self.connection
        assert connection is not None
        identifier = packet.properties.subscription_identifiers
        sub_id = identifier[0] if identifier else 0
        codes: list[int] = []
        made: list[_Sub] = []
        refused: list[str] = []
        for request in packet.subscriptions:
            code, sub = self._subscribe_one(request, sub_id)
            codes.append(code)
            if sub is not None:
                made.append(sub)
            else:
                refused.append(request.topic_filter)
        props = Properties()
        if refused and self.level == 5:
            props = Properties(reason_string=_reason(f"not subscribed: {', '.join(refused)}"))

        def release() -> None:
            # What the new subscriptions received before the SUBACK (retained messages
            # above all) goes out after it.
            for sub in made:
                held, sub.held = sub.held or [], None
                consumer = sub.consumer
                for entry in held:
                    if consumer is not None and not consumer.closed:
                        self.deliver(consumer, entry)

        self._ack(
            self.broker.pending_write(), Suback(packet.packet_id, tuple(codes), props), release
        )

    def _subscribe_one(self, request: Subscription, sub_id: int) -> tuple[int, _Sub | None]:
        topic_filter = request.topic_filter
        group = None
        pattern = topic_filter
        if topic_filter.startswith("$share/"):
            _, _, rest = topic_filter.partition("/")
            group, sep, pattern = rest.partition("/")
            if not group or not sep or not pattern or "+" in group or "#" in group:
                return ReasonCode.TOPIC_FILTER_INVALID, None
            if request.no_local and self.level == 5:
                raise MqttError(ReasonCode.PROTOCOL_ERROR, "no local on a shared subscription")
        if _has_core_wildcard(pattern):
            return ReasonCode.TOPIC_FILTER_INVALID, None
        qos = min(request.qos, 2)
        sub = _Sub(
            topic_filter,
            qos,
            no_local=request.no_local,
            retain_as_published=request.retain_as_published,
            identifier=sub_id,
            held=[],
        )
        existed = topic_filter in self._subs
        if existed:
            self._drop(topic_filter, remove_durable=False)
        elif self.persistent and group is None:
            existed = any(
                info.name == topic_filter
                for info in self.broker.durable_subscriptions(self.client_id)
            )
        handling = request.retain_handling
        send_retained = group is None and (handling == 0 or (handling == 1 and not existed))
        try:
            self._attach(
                sub, Destination.topic(core_topic(pattern)), retained=send_retained, group=group
            )
        except AuthorizationError:
            # Logged by the core. 0x87 in MQTT 5; the codec writes 0x80 for 3.1.1.
            return ReasonCode.NOT_AUTHORIZED, None
        except LimitError as exc:
            log.info("MQTT subscribe to %r refused: %s", topic_filter, exc)
            return ReasonCode.QUOTA_EXCEEDED, None
        except BrokerError as exc:
            log.info("MQTT subscribe to %r refused: %s", topic_filter, exc)
            return ReasonCode.UNSPECIFIED_ERROR, None
        return qos, sub

    def _attach(
        self, sub: _Sub, destination: Destination, *, retained: bool, group: str | None = None
    ) -> None:
        connection = self.connection
        assert connection is not None
        prefetch = min(self._receive_max, self.service.default_prefetch)
        sub.consumer = connection.subscribe(
            sub.filter,
            destination,
            self,
            SubscribeOptions(
                tag=sub,
                ack_mode=AckMode.INDIVIDUAL if sub.qos else AckMode.AUTO,
                prefetch=prefetch,
                durable_name=sub.filter if self.persistent and group is None else None,
                no_local=sub.no_local,
                retained=retained,
                shared_group=group,
                durable_options=sub.options(),
            ),
        )
        queue = sub.consumer.queue
        if queue is not None and queue.durable:
            # QoS 0 is at most once: a persistent session's QoS 0 subscription is bounded
            # like a non-durable one, online or off; QoS 1/2 keep everything in the store.
            limit = self.broker.policies.for_destination(destination).pending_message_limit
            queue.pending_limit = limit if not sub.qos else -1
        self._subs[sub.filter] = sub

    def _unsubscribe(self, packet: Unsubscribe) -> None:
        codes = []
        for topic_filter in packet.topic_filters:
            found = topic_filter in self._subs
            if found:
                self._drop(topic_filter, remove_durable=True)
            codes.append(ReasonCode.SUCCESS if found else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self._ack(self.broker.pending_write(), Unsuback(packet.packet_id, tuple(codes)))

    def _drop(self, topic_filter: str, *, remove_durable: bool) -> None:
        connection = self.connection
        assert connection is not None
        sub = self._subs.pop(topic_filter)
        if sub.consumer is not None and not sub.consumer.closed:
            connection.unsubscribe(sub.filter)
        if remove_durable and self.persistent and not topic_filter.startswith("$share/"):
            with contextlib.suppress(BrokerError):
                connection.remove_durable(topic_filter)

    # ----------------------------------------------------------------- deliver (outbound)

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        sub = consumer.tag
        assert isinstance(sub, _Sub)
        if sub.held is not None:
            sub.held.append(entry)
            return
        message = entry.message
        if message.annotations is None:
            published = 1 if message.persistent else 0
        else:
            published = _published_qos(message)
        qos = min(sub.qos, published)
        if qos and (self._backlog or len(self._outbound) >= self._receive_max):
            # Never more unacknowledged PUBLISHes than the client's Receive Maximum.
            self._backlog.append((consumer, entry, qos))
            self._update_flow()
            return
        self._deliver_now(consumer, entry, sub, qos)

    def _deliver_now(self, consumer: Consumer, entry: Entry, sub: _Sub, qos: int) -> None:
        message = entry.message
        retain = entry.retained or (sub.retain_as_published and _published_retained(message))
        if not qos and not sub.identifier and not self._client_alias_max and not message.expiration:
            # Nothing in this PUBLISH is particular to the subscriber: its bytes are made
            # once per message and shared by every such delivery.
            self._deliver_shared(consumer, message, retain)
            return
        props = self._outgoing_properties(message, sub)
        topic = mqtt_topic(message.destination.name)
        pid = 0
        if qos:
            pid = self._packet_id(message.message_id if entry.redeliveries else None)
        new_alias = None
        if self._client_alias_max:
            alias = self._aliases_out.get(topic)
            if alias is not None:
                props = _with(props, topic_alias=alias)
                topic = ""
            elif len(self._aliases_out) < self._client_alias_max:
                new_alias = len(self._aliases_out) + 1
                props = _with(props, topic_alias=new_alias)
        try:
            self.codec.send_publish(
                topic,
                message.body,
                qos,
                packet_id=pid,
                retain=retain,
                dup=qos > 0 and entry.redeliveries > 0,
                properties=props,
            )
        except MqttError as exc:
            # Larger than the client's Maximum Packet Size, or a core topic no MQTT topic
            # can name: the spec says discard it, as if delivered.
            log.info("MQTT message not delivered to %s: %s", self.client_id, exc.message)
            if consumer.ack_mode is not AckMode.AUTO:
                self._ack_delivered(consumer, message.message_id)
            return
        if new_alias is not None:
            self._aliases_out[topic] = new_alias
        if qos:
            self._outbound[pid] = _Outbound(consumer, message.message_id, qos)
            if len(self._outbound) >= self._receive_max:
                self._update_flow()
        elif consumer.ack_mode is not AckMode.AUTO:
            self._ack_delivered(consumer, message.message_id)
        self._flush(len(message.body) + len(topic) + _PUBLISH_OVERHEAD)

    def _deliver_shared(self, consumer: Consumer, message: Message, retain: bool) -> None:
        """A QoS 0 delivery with no subscription identifier, topic alias or expiry."""
        codec = self.codec
        key = (codec.protocol_level or 4, retain)
        shared = self.service.shared
        chunks = shared.get(message, key)
        try:
            if chunks is None:
                chunks = codec.encode_publish(
                    mqtt_topic(message.destination.name),
                    message.body,
                    retain=retain,
                    properties=self._outgoing_properties(message, _NO_SUB),
                )
                shared.keep(message, key, chunks)
            codec.send_encoded(chunks)
        except MqttError as exc:
            log.info("MQTT message not delivered to %s: %s", self.client_id, exc.message)
        if consumer.ack_mode is not AckMode.AUTO:
            self._ack_delivered(consumer, message.message_id)
        self._flush(len(message.body) + len(message.destination.name) + _PUBLISH_OVERHEAD)

    def _outgoing_properties(self, message: Message, sub: _Sub) -> Properties:
        if self.level != 5:
            return Properties()
        expiry = None
        if message.expiration:
            expiry = max(0, (message.expiration - self.broker.now_ms() + 999) // 1000)
        user = tuple(
            (name, _text(value))
            for name, value in message.properties.items()
            if name not in _NOT_USER_PROPERTIES
            and value is not None
            and not isinstance(value, bytes)
        )
        typed_id = message.correlation_id
        correlation: object
        if isinstance(typed_id, str):
            correlation = typed_id.encode() if typed_id else None
        elif typed_id is None:
            # Messages stored before typed ids kept a binary one as this property.
            correlation = message.properties.get("JMSCorrelationIDAsBytes")
        elif isinstance(typed_id, bytes):
            correlation = typed_id
        else:
            correlation = id_text(typed_id).encode()
        content_type: object = message.content_type
        if content_type is None:
            # A STOMP sender's header (and MQTT messages stored before the field).
            content_type = message.properties.get("content-type")
        reply_to = message.reply_to
        return Properties(
            payload_format_indicator=1 if message.body_kind is BodyKind.TEXT else None,
            message_expiry_interval=expiry,
            content_type=content_type if isinstance(content_type, str) else None,
            response_topic=mqtt_topic(reply_to.name) if reply_to is not None else None,
            correlation_data=correlation if isinstance(correlation, bytes) else None,
            subscription_identifiers=(sub.identifier,) if sub.identifier else (),
            user_properties=user,
        )

    def _packet_id(self, resent: str | None = None) -> int:
        """A free packet id; a message resent from an earlier connection gets its old one."""
        if resent is not None:
            old = self._resend_ids.pop(resent, None)
            if old is not None and old not in self._outbound:
                return old
        reserved = self._resend_ids.values()
        for _ in range(65535):
            pid = self._next_id
            self._next_id = pid % 65535 + 1
            if pid not in self._outbound and pid not in reserved:
                return pid
        raise MqttError(ReasonCode.QUOTA_EXCEEDED, "no free packet identifier")

    def _ack_delivered(self, consumer: Consumer, message_id: str) -> None:
        """A delivery needing no acknowledgement from the client (sent at QoS 0 on a
        QoS 1/2 subscription, or not sendable): settle it now. The core dispatches in
        its own tick, so acking from inside ``deliver`` is safe."""
        if self.connection is not None and not consumer.closed:
            self.connection.ack(consumer, message_id, cumulative=False, transaction=None)

    # ----------------------------------------------------------------- disconnect

    def _disconnect(self, packet: Disconnect) -> None:
        props = packet.properties
        if props.session_expiry_interval is not None:
            if self.session_expiry == 0 and props.session_expiry_interval > 0:
                raise MqttError(
                    ReasonCode.PROTOCOL_ERROR, "session expiry cannot be set at DISCONNECT"
                )
            self.session_expiry = props.session_expiry_interval
            self._state.expiry = self.session_expiry
        # Only a normal DISCONNECT (0x00) deletes the will [MQTT-3.14.4-3]; 0x04 asks for
        # it, and so does any error the client reports.
        normal = packet.reason_code == ReasonCode.NORMAL_DISCONNECTION
        if normal:
            self.will = None
        self._close(abnormal=not normal)

    def _protocol_error(self, code: int, reason: str) -> None:
        if self._closing:
            return
        log.info("MQTT protocol error from %s: %s", self.link.peer if self.link else "?", reason)
        if self.connection is None:
            if code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION or self.codec.protocol_level == 5:
                self.level = self.codec.protocol_level or 4
                self._refuse(code, reason)
                return
        elif self.level == 5:
            self._send(Disconnect(code, Properties(reason_string=reason[:100])))
        self._close(abnormal=True)

    def _close(self, *, abnormal: bool, core_closed: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._events.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        connection, self.connection = self.connection, None
        if connection is not None and not core_closed:
            connection.close()
        if connection is not None or core_closed:
            self._publish_will(abnormal)
            self._end_session()
        if self.link is not None:
            self.link.close()

    def _publish_will(self, abnormal: bool) -> None:
        will, self.will = self.will, None
        if will is None or not abnormal:
            return
        props = will.properties
        message = self._message(
            will.topic, Publish(will.topic, will.payload, will.qos, will.retain, properties=props)
        )
        delay = min(props.will_delay_interval or 0, self.session_expiry) if self.level == 5 else 0
        if delay > 0:
            self.service.schedule_will(self.client_id, delay, message, self.username)
        else:
            self.service.publish_will(message, self.username)

    def _end_session(self) -> None:
        service = self.service
        if not self.client_id:
            return
        if not self.persistent:
            return
        if self.session_expiry == 0:
            service.discard_session(self.client_id)
            return
        self._state.disconnected_at = self.broker.now_ms()
        self._state.outbound = {
            out.message_id: pid
            for pid, out in self._outbound.items()
            if out.consumer is not None and not out.released
        }
        self._save_state()
        if self.session_expiry != NEVER_EXPIRES:
            service.schedule_expiry(self.client_id, self.session_expiry)

    # ----------------------------------------------------------------- output

    def _ack(
        self,
        future: Awaitable[None] | None,
        packet: Packet | None,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Send ``packet`` once ``future`` and every earlier ack's future are done, in order;
        then call ``after``."""
        self._acks.add(future, (packet, after))

    def _release_ack(self, pending: _PendingAck) -> None:
        if self._closing:
            return
        packet, after = pending
        if packet is not None:
            self._send(packet)
        if after is not None:
            after()

    def _ack_failed(self, _: _PendingAck) -> None:
        self._protocol_error(
            ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "the broker could not store the message"
        )

    def _send(self, packet: Packet) -> None:
        if not self._problem_info and isinstance(packet, _ACKS) and packet.properties.reason_string:
            # [MQTT-3.1.2-29]: only CONNACK, PUBLISH and DISCONNECT may carry one then.
            packet = dataclasses.replace(packet, properties=Properties())
        try:
            self.codec.send(packet)
        except MqttError as exc:
            log.warning("MQTT packet not sent to %s: %s", self.client_id, exc.message)
            return
        self._flush()

    def _flush(self, nbytes: int = 0) -> None:
        if self.link is not None:
            self.link.schedule_flush(nbytes)


def _not_found(kind: type[Pubrel] | type[Pubcomp], pid: int, level: int) -> Pubrel | Pubcomp:
    if level != 5:
        return kind(pid)
    props = Properties(reason_string="packet identifier not found")
    return kind(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, props)


def _has_core_wildcard(topic: str) -> bool:
    """Whether a level of ``topic`` is ``*`` or ``>``: a wildcard in the core, so no MQTT
    topic (or filter level) can be one."""
    return any(level in ("*", ">") for level in topic.split("/"))


def _reason(text: str) -> str:
    """A Reason String, short as the spec asks (clients log it)."""
    return text if len(text) <= 100 else text[:97] + "..."


def _with(props: Properties, **changes: object) -> Properties:
    return dataclasses.replace(props, **changes)  # type: ignore[arg-type]


#: Properties that are MQTT 5 properties of their own, not user properties.
_NOT_USER_PROPERTIES = frozenset({"content-type", "JMSCorrelationIDAsBytes"})
#: In the MQTT annotation (``MQTT_ANNOTATION``): bits 0-1 QoS, this bit published retained.
_ANNOTATED_RETAIN = 0x04


def _annotations(qos: int, retain: bool) -> dict[str, bytes]:
    return {MQTT_ANNOTATION: bytes((qos | (_ANNOTATED_RETAIN if retain else 0),))}


def _published_qos(message: Message) -> int:
    """The QoS ``message`` was published with (a message of another protocol: 1 if
    persistent, else 0)."""
    annotations = message.annotations
    if annotations is not None:
        flags = annotations.get(MQTT_ANNOTATION)
        if flags:
            return flags[0] & 0x03
    return 1 if message.persistent else 0


def _published_retained(message: Message) -> bool:
    """Whether ``message`` was published with the retain flag."""
    annotations = message.annotations
    if annotations is None:
        return False
    flags = annotations.get(MQTT_ANNOTATION)
    return bool(flags and flags[0] & _ANNOTATED_RETAIN)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("MQTT login task failed", exc_info=task.exception())
