"""STOMP 1.0–1.2 on the core, mapped the way ActiveMQ maps it.

See ``docs/stomp.md`` for the mapping of headers and destinations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable
from dataclasses import replace

from sealmq.adapters.base import Authenticator, Link
from sealmq.adapters.confirm import OrderedConfirmations
from sealmq.adapters.shared import SharedEncoding
from sealmq.core.broker import Broker, Connection, SubscribeOptions
from sealmq.core.errors import BrokerError
from sealmq.core.model import (
    DEFAULT_PRIORITY,
    BodyKind,
    Destination,
    DestinationKind,
    Message,
    PropertyValue,
    id_text,
)
from sealmq.core.queues import AckMode, Consumer, Entry
from sealmq.wire.stomp import Frame, Heartbeat, Limits, StompCodec, StompError

__all__ = ["SUPPORTED_VERSIONS", "StompSession"]

log = logging.getLogger("sealmq.stomp")

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
SERVER_NAME = "sealmq/0.1"

#: Shortest heart-beat interval the broker agrees to, in ms: a client asking for
#: less gets this (ActiveMQ has no floor; 1 s keeps idle connections cheap).
MIN_HEARTBEAT_MS = 1000
#: A client silent for this many of its promised intervals is disconnected
#: (ActiveMQ's default grace factor is 1.5; the spec suggests some tolerance).
HEARTBEAT_GRACE = 2.0
#: About how many bytes a MESSAGE frame's headers add to its body, for flow control.
_MESSAGE_OVERHEAD = 200
#: Parsed destination headers a connection keeps (forgotten all at once beyond this):
#: a producer uses a few; one naming a new destination per frame costs only a re-parse.
_DESTINATIONS_KEPT = 64

#: Headers with protocol meaning: never copied into message properties.
_PROTOCOL_HEADERS = frozenset(
    {
        "destination",
        "receipt",
        "transaction",
        "content-length",
        "persistent",
        "priority",
        "expires",
        "correlation-id",
        "reply-to",
        "type",
        "JMSXGroupID",
        "JMSXGroupSeq",
        "message-id",
        "timestamp",
        "amq-msg-type",
        "subscription",
        "ack",
        "redelivered",
    }
)

_ACK_MODES = {
    "auto": AckMode.AUTO,
    "client": AckMode.CLIENT,
    "client-individual": AckMode.INDIVIDUAL,
}


class _ClientError(Exception):
    """A request the broker refuses with an ERROR frame.

    As in ActiveMQ the connection goes on, unless ``fatal`` (its state is unknown, or
    it is not logged in): then it is closed after the ERROR.
    """

    def __init__(self, text: str, *, fatal: bool = False) -> None:
        super().__init__(text)
        self.fatal = fatal


class _Subscription:
    __slots__ = ("ack_mode", "consumer", "destination_header", "header_line", "id", "number")

    def __init__(self, sub_id: str, number: int, destination_header: str, ack_mode: AckMode):
        self.id = sub_id
        self.number = number
        self.destination_header = destination_header
        self.ack_mode = ack_mode
        self.consumer: Consumer | None = None
        #: ``subscription:<id>`` as this connection's MESSAGE frames carry it, once encoded.
        self.header_line: bytes | None = None


class StompSession:
    """One STOMP connection: login, subscriptions, acks, transactions, receipts, heart-beats."""

    def __init__(self, broker: Broker, authenticator: Authenticator, limits: Limits) -> None:
        self.broker = broker
        self.authenticator = authenticator
        self.codec = StompCodec(limits)
        self.link: Link | None = None
        self.connection: Connection | None = None
        self.version = "1.0"
        self._events: deque[Frame | Heartbeat] = deque()
        self._busy = False  # waiting for authentication: hold later frames
        self._closing = False
        self._subs: dict[str, _Subscription] = {}
        self._subs_by_number: dict[int, _Subscription] = {}
        self._sub_numbers = 0
        # Receipts (and ERRORs after them) wait for the durability of their own and every
        # earlier frame: (the answer: a RECEIPT's id or an ERROR frame, the frame answered).
        self._receipts: OrderedConfirmations[tuple[Frame | str | None, Frame]] = (
            OrderedConfirmations(self._release_receipt, self._receipt_failed)
        )
        self._client_heartbeat = (0, 0)
        self._last_received = 0.0
        self._last_sent = 0.0
        self._send_interval = 0.0
        self._recv_interval = 0.0
        self._timer: asyncio.TimerHandle | None = None
        #: Destination headers this connection used, parsed (plain queues and topics only).
        self._destinations: dict[str, Destination] = {}
        #: MESSAGE tails encoded for the broker's last message, shared by its subscribers.
        self._shared = _shared_encoding(broker)

    # ----------------------------------------------------------------- driver side

    def connection_made(self, link: Link) -> None:
        # The driver closes a connection not logged in by its login deadline.
        self.link = link
        self._last_received = time.monotonic()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_received = time.monotonic()
        try:
            self.codec.receive_data(data)
        except StompError as exc:
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
        # Free a part-received frame now: session and driver refer to each other, so
        # without this it would wait for the cyclic GC (up to max_frame_body each).
        self._events.clear()
        with contextlib.suppress(StompError):
            self.codec.receive_eof()
        self.link = None

    def data_to_send(self) -> list[bytes]:
        return self.codec.data_to_send()

    def pause_writing(self) -> None:
        for sub in self._subs.values():
            if sub.consumer is not None:
                sub.consumer.paused = True

    def resume_writing(self) -> None:
        if self.connection is None:
            return
        for sub in list(self._subs.values()):
            if sub.consumer is not None and not sub.consumer.closed:
                self.connection.resume(sub.consumer)

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

    # ----------------------------------------------------------------- frames

    def _process(self) -> None:
        while self._events and not self._busy and not self._closing:
            event = self._events.popleft()
            if isinstance(event, Heartbeat):
                continue
            try:
                self._handle(event)
            except _ClientError as exc:
                if exc.fatal:
                    self._fatal(str(exc), event)
                else:
                    self._error(str(exc), event)
            except BrokerError as exc:
                self._error(str(exc), event)
            except StompError as exc:
                self._fatal(exc.message, event)

    def _handle(self, frame: Frame) -> None:
        command = frame.command
        if self.connection is None:
            if command in ("CONNECT", "STOMP"):
                self._connect(frame)
                return
            raise _ClientError(f"{command} received before CONNECT", fatal=True)
        if command == "SEND":
            self._send(frame)
        elif command == "ACK":
            self._ack(frame, nack=False)
        elif command == "SUBSCRIBE":
            self._subscribe(frame)
            self._receipt(frame, None)
        elif command == "UNSUBSCRIBE":
            self._unsubscribe(frame)
            self._receipt(frame, None)
        elif command == "NACK":
            if self.version == "1.0":
                raise _ClientError("NACK is not part of STOMP 1.0")
            self._ack(frame, nack=True)
        elif command == "BEGIN":
            self.connection.begin(self._transaction(frame))
            self._receipt(frame, None)
        elif command == "COMMIT":
            self._receipt(frame, self.connection.commit(self._transaction(frame)))
        elif command == "ABORT":
            self.connection.abort(self._transaction(frame))
            self._receipt(frame, None)
        elif command == "DISCONNECT":
            self._receipt(frame, None)
            self._closing = True
            self._close_when_receipts_done()
        elif command in ("CONNECT", "STOMP"):
            raise _ClientError("already connected")
        else:
            raise _ClientError(f"unexpected command {command}", fatal=True)

    # ----------------------------------------------------------------- connect

    def _connect(self, frame: Frame) -> None:
        accepted = (frame.get("accept-version") or "1.0").split(",")
        versions = [v.strip() for v in accepted if v.strip() in SUPPORTED_VERSIONS]
        if not versions:
            raise _ClientError(
                "Supported protocol versions are " + ",".join(SUPPORTED_VERSIONS), fatal=True
            )
        self.version = max(versions)
        if self.version != "1.0":
            self._client_heartbeat = _parse_heartbeat(frame.get("heart-beat"))
        self._busy = True
        link = self.link
        assert link is not None
        link.pause_reading()
        task = asyncio.ensure_future(self._login(frame))
        task.add_done_callback(_log_task_failure)

    async def _login(self, frame: Frame) -> None:
        assert self.link is not None
        principal = await self.authenticator.authenticate_async(
            frame.get("login"), frame.get("passcode"), self.link.peer_certificate, self.link.peer
        )
        if self._closing or self.link is None:
            return
        if principal is None:
            log.info("STOMP login refused for %r from %s", frame.get("login"), self.link.peer)
            self._fatal("Authentication failed: login or passcode is not valid", frame)
            return
        try:
            self.connection = self.broker.connect(
                client_id=frame.get("client-id"),
                principal=replace(principal, certificate=self.link.peer_certificate),
                peer=self.link.peer,
            )
        except BrokerError as exc:
            self._fatal(str(exc), frame)
            return
        self.connection.on_taken_over = self._taken_over
        self.codec.version = self.version
        self.link.logged_in()
        headers = [
            ("version", self.version),
            ("server", SERVER_NAME),
            ("session", self.connection.id),
        ]
        if self.version != "1.0":
            headers.append(("heart-beat", self._negotiate_heartbeat(*self._client_heartbeat)))
        self._write(Frame("CONNECTED", tuple(headers)))
        self._busy = False
        self.link.resume_reading()
        self._process()

    def _taken_over(self) -> None:
        """A newer connection (MQTT) with our client id took it: the core side is closed."""
        self.connection = None
        if not self._closing:
            self._fatal("Another connection with the same client id took over")

    def _negotiate_heartbeat(self, cx: int, cy: int) -> str:
        send_ms = max(cy, MIN_HEARTBEAT_MS) if cy else 0
        recv_ms = max(cx, MIN_HEARTBEAT_MS) if cx else 0
        self._send_interval = send_ms / 1000
        self._recv_interval = recv_ms / 1000
        if send_ms or recv_ms:
            self._schedule_heartbeat()
        return f"{send_ms},{recv_ms}"

    def _schedule_heartbeat(self) -> None:
        intervals = [i for i in (self._send_interval, self._recv_interval) if i]
        assert self.link is not None
        self._timer = self.link.call_later(min(intervals) / 2, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        self._timer = None
        if self._closing or self.link is None:
            return
        now = time.monotonic()
        if self._recv_interval and now - self._last_received > self._recv_interval * (
            HEARTBEAT_GRACE
        ):
            log.info("STOMP client %s missed its heart-beats; closing", self.link.peer)
            self._closing = True
            self.link.close()
            return
        if self._send_interval and now - self._last_sent >= self._send_interval / 2:
            self.codec.send_heartbeat()
            self._flush()
        self._schedule_heartbeat()

    # ----------------------------------------------------------------- send

    def _send(self, frame: Frame) -> None:
        connection = self.connection
        assert connection is not None
        destination_header = frame.get("destination")
        if not destination_header:
            raise _ClientError("SEND needs a destination header")
        destination = self._destination(destination_header)
        message = self._message(frame, destination)
        future = connection.send(message, frame.get("transaction"))
        self._receipt(frame, future)

    def _message(self, frame: Frame, destination: Destination) -> Message:
        properties: dict[str, PropertyValue] = {}
        persistent = False
        priority = DEFAULT_PRIORITY
        expiration = 0
        correlation_id = reply_to = message_type = group_id = None
        group_seq = 0
        body_kind = BodyKind.BYTES
        msg_type = None
        has_length = False
        seen: set[str] = set()
        for name, value in frame.headers:
            if name in seen:
                continue  # STOMP 1.2: the first of repeated headers wins
            seen.add(name)
            if name not in _PROTOCOL_HEADERS:
                properties[name] = value
            elif name == "persistent":
                persistent = value.lower() == "true"
            elif name == "priority":
                priority = _int_header(name, value, 0, 9)
            elif name == "expires":
                expiration = _int_header(name, value, 0, None)
            elif name == "correlation-id":
                correlation_id = value
            elif name == "reply-to":
                if _split_destination(value.strip()) is None:
                    # ActiveMQ: a reply-to it cannot resolve travels as a string property.
                    properties[name] = value
                else:
                    reply_to = self._destination(value)
            elif name == "type":
                message_type = value
            elif name == "JMSXGroupID":
                group_id = value
            elif name == "JMSXGroupSeq":
                # -1 closes the group (JMS): its next message may go to another consumer.
                group_seq = _int_header(name, value, -1, None)
            elif name == "content-length":
                has_length = True
            elif name == "amq-msg-type":
                msg_type = value
        # ActiveMQ: a frame without content-length is a text message, with one a bytes message,
        # unless amq-msg-type says otherwise.
        if msg_type == "text" or (msg_type is None and not has_length):
            body_kind = BodyKind.TEXT
        assert self.connection is not None
        return Message(
            message_id="",  # the core stamps id, timestamp and user at send
            destination=destination,
            body=frame.body,
            body_kind=body_kind,
            persistent=persistent,
            priority=priority,
            expiration=expiration,
            correlation_id=correlation_id,
            reply_to=reply_to,
            type=message_type,
            group_id=group_id,
            group_seq=group_seq,
            properties=properties,
        )

    def _destination(self, header: str) -> Destination:
        known = self._destinations.get(header)
        if known is not None:
            return known
        connection = self.connection
        assert connection is not None
        # ActiveMQ trims the value before looking at its prefix; a name with none of the
        # prefixes is a queue of that name (LegacyFrameTranslator's fallback).
        header = header.strip()
        parsed = _split_destination(header)
        kind, name = parsed if parsed is not None else (DestinationKind.QUEUE, header)
        if not name:
            raise _ClientError(f"destination {header!r} has no name")
        if kind is None:  # /temp-queue/
            return connection.create_temp_queue(name)
        if kind is DestinationKind.TEMP_TOPIC and not header.startswith("/remote-"):
            return connection.create_temp_topic(name)
        if "," in name and kind in (DestinationKind.QUEUE, DestinationKind.TOPIC):
            # A composite (/queue/a,/topic/b): the core's form names each part's kind.
            name = ",".join(_composite_part(part.strip()) for part in name.split(","))
        destination = Destination(kind, name)
        if kind in (DestinationKind.QUEUE, DestinationKind.TOPIC):
            # A producer names the same few destinations frame after frame.
            if len(self._destinations) >= _DESTINATIONS_KEPT:
                self._destinations.clear()
            self._destinations[header] = destination
        return destination

    def _destination_header(self, destination: Destination) -> str:
        kind = destination.kind
        if kind is DestinationKind.QUEUE:
            return "/queue/" + destination.name
        if kind is DestinationKind.TOPIC:
            return "/topic/" + destination.name
        assert self.connection is not None
        own = self.connection.id + ":"
        local = destination.name.startswith(own)
        if kind is DestinationKind.TEMP_QUEUE:
            if local:
                return "/temp-queue/" + destination.name[len(own) :]
            return "/remote-temp-queue/" + destination.name
        if local:
            return "/temp-topic/" + destination.name[len(own) :]
        return "/remote-temp-topic/" + destination.name

    # ----------------------------------------------------------------- subscribe

    def _subscribe(self, frame: Frame) -> None:
        connection = self.connection
        assert connection is not None
        destination_header = frame.get("destination")
        if not destination_header:
            raise _ClientError("SUBSCRIBE needs a destination header")
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise _ClientError("SUBSCRIBE needs an id header")
            sub_id = destination_header
        if sub_id in self._subs:
            raise _ClientError(f"subscription id {sub_id!r} is already in use")
        mode_name = frame.get("ack") or "auto"
        ack_mode = _ACK_MODES.get(mode_name)
        if ack_mode is None:
            raise _ClientError(
                f"ack mode {mode_name!r} is not one of auto, client, client-individual"
            )
        prefetch_header = frame.get("activemq.prefetchSize")
        prefetch = (
            # STOMP has no pull: a prefetch of 0 means one at a time, as it always has.
            max(1, _int_header("activemq.prefetchSize", prefetch_header, 0, None))
            if (prefetch_header)
            else None
        )
        durable_name = frame.get("activemq.subscriptionName") or frame.get(
            "durable-subscription-name"
        )
        destination = self._destination(destination_header)
        if durable_name is not None and not destination.is_topic:
            raise _ClientError("durable subscriptions are for topics")
        no_local = _flag(frame, "activemq.noLocal")
        # ActiveMQ's queue browser: what the queue holds now, then a browser:end MESSAGE.
        browse = _flag(frame, "browser")
        priority_header = frame.get("activemq.priority")
        priority = (
            _int_header("activemq.priority", priority_header, 0, 127) if priority_header else 0
        )
        self._sub_numbers += 1
        sub = _Subscription(sub_id, self._sub_numbers, destination_header, ack_mode)
        self._subs[sub_id] = sub
        self._subs_by_number[sub.number] = sub
        try:
            sub.consumer = connection.subscribe(
                sub_id,
                destination,
                self,
                SubscribeOptions(
                    tag=sub,
                    ack_mode=ack_mode,
                    prefetch=prefetch,
                    durable_name=durable_name,
                    # Compiled by the core; one that does not parse is an ERROR frame.
                    selector=frame.get("selector"),
                    no_local=no_local,
                    exclusive=_flag(frame, "activemq.exclusive"),
                    priority=priority,
                    browse=browse,
                    on_browse_end=self._browse_end if browse else None,
                ),
            )
        except BrokerError:
            del self._subs[sub_id]
            del self._subs_by_number[sub.number]
            raise

    def _unsubscribe(self, frame: Frame) -> None:
        connection = self.connection
        assert connection is not None
        sub_id = frame.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.get("destination")
        if sub_id is None:
            raise _ClientError("UNSUBSCRIBE needs an id header")
        sub = self._subs.pop(sub_id, None)
        durable_name = frame.get("activemq.subscriptionName") or frame.get(
            "durable-subscription-name"
        )
        if sub is None and durable_name is None:
            raise _ClientError(f"no subscription with id {sub_id!r}")
        if sub is not None:
            del self._subs_by_number[sub.number]
            connection.unsubscribe(sub_id)
        if durable_name is not None:
            connection.remove_durable(durable_name)
            if connection.client_id is not None:
                # Its last durable subscription gone, the client id is free for anyone.
                self.broker.release_session(connection.client_id)

    # ----------------------------------------------------------------- deliver

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Write one MESSAGE frame; the driver flushes all of a tick's frames at once.

        Only ``subscription`` and ``ack`` differ between the subscribers of a message
        (and ``destination`` for a temporary one): the rest of the frame, body included,
        is encoded once per message and STOMP version and shared by its deliveries.
        """
        sub = consumer.tag
        assert isinstance(sub, _Subscription)
        message = entry.message
        redelivered = entry.redeliveries > 0
        shareable = message.destination.kind in _SAME_HEADER_KINDS
        key = (self.version, redelivered)
        tail = self._shared.get(message, key) if shareable else None
        if tail is None:
            tail = self._message_tail(message, redelivered)
            if shareable:
                self._shared.keep(message, key, tail)
        codec = self.codec
        own = sub.header_line
        if own is None:
            own = sub.header_line = codec.encode_header_lines((("subscription", sub.id),))
        if sub.ack_mode is not AckMode.AUTO and self.version == "1.2":
            own += codec.encode_header_lines((("ack", f"{sub.number}:{message.message_id}"),))
        codec.send_message_with(own, tail)
        self._flush(len(message.body) + _MESSAGE_OVERHEAD)

    def _browse_end(self, consumer: Consumer) -> None:
        """The MESSAGE that ends a browse, with ActiveMQ's headers and no body."""
        sub = consumer.tag
        assert isinstance(sub, _Subscription)
        headers = (
            ("subscription", sub.id),
            ("browser", "end"),
            ("destination", sub.destination_header),
            ("message-id", "0"),
        )
        self._write(Frame("MESSAGE", headers))

    def _message_tail(self, message: Message, redelivered: bool) -> tuple[bytes, ...]:
        """The MESSAGE headers every subscriber gets alike, and the body, encoded."""
        headers = [
            ("message-id", message.message_id),
            ("destination", self._destination_header(message.destination)),
        ]
        headers.append(("persistent", "true" if message.persistent else "false"))
        headers.append(("priority", str(message.priority)))
        headers.append(("expires", str(message.expiration)))
        headers.append(("timestamp", str(message.timestamp)))
        if redelivered:
            headers.append(("redelivered", "true"))
        correlation = message.correlation_id
        if correlation is not None:
            text = correlation if type(correlation) is str else id_text(correlation)
            headers.append(("correlation-id", text))
        if message.reply_to is not None:
            headers.append(("reply-to", self._destination_header(message.reply_to)))
        if message.type is not None:
            headers.append(("type", message.type))
        if message.group_id is not None:
            headers.append(("JMSXGroupID", message.group_id))
            headers.append(("JMSXGroupSeq", str(message.group_seq)))
        if message.body_kind is BodyKind.TEXT:
            headers.append(("amq-msg-type", "text"))
        if message.content_type is not None:
            headers.append(("content-type", message.content_type))
        fixed = len(headers)
        for name, value in message.properties.items():
            if value is None or isinstance(value, bytes):
                continue
            if isinstance(value, bool):
                headers.append((name, "true" if value else "false"))
            else:
                headers.append((name, str(value)))
        try:
            return self.codec.encode_message_tail(headers, message.body)
        except StompError:
            # A property this STOMP version cannot carry (a line break under 1.0):
            # deliver the message without its properties rather than not at all.
            log.warning("STOMP %s cannot carry a property of a message; sent without", self.version)
            return self.codec.encode_message_tail(headers[:fixed], message.body)

    # ----------------------------------------------------------------- ack

    def _ack(self, frame: Frame, *, nack: bool) -> None:
        connection = self.connection
        assert connection is not None
        command = "NACK" if nack else "ACK"
        if self.version == "1.2":
            ack_id = frame.get("id")
            if ack_id is None:
                raise _ClientError(f"{command} needs an id header")
            number, sep, message_id = ack_id.partition(":")
            sub = self._subs_by_number.get(int(number)) if sep and number.isdigit() else None
        else:
            message_id = frame.get("message-id") or ""
            if not message_id:
                raise _ClientError(f"{command} needs a message-id header")
            sub_id = frame.get("subscription")
            if sub_id is not None:
                sub = self._subs.get(sub_id)
            else:
                sub = next(
                    (
                        s
                        for s in self._subs.values()
                        if s.consumer is not None and message_id in s.consumer.in_flight
                    ),
                    None,
                )
        if sub is None or sub.consumer is None or sub.ack_mode is AckMode.AUTO:
            raise _ClientError(_unexpected_ack(command, message_id))
        settle = connection.nack if nack else connection.ack
        if not settle(
            sub.consumer,
            message_id,
            cumulative=sub.ack_mode is AckMode.CLIENT,
            transaction=frame.get("transaction"),
        ):
            raise _ClientError(_unexpected_ack(command, message_id))
        self._receipt(frame, None)

    def _transaction(self, frame: Frame) -> str:
        transaction = frame.get("transaction")
        if not transaction:
            raise _ClientError(f"{frame.command} needs a transaction header")
        return transaction

    # ----------------------------------------------------------------- receipts, errors

    def _receipt(self, frame: Frame, future: Awaitable[None] | None) -> None:
        """Send the frame's RECEIPT once its effect, and every earlier frame's, is durable."""
        receipt = frame.get("receipt")
        if future is None:
            if receipt is None and not self._receipts:
                # Nobody waits on this frame (an ACK without a receipt, the usual case): what
                # it stored needs no fsync of its own. A later receipt still covers it:
                # pending_write() then makes every earlier write durable first.
                return
            # Acks, durable subscriptions and DLQ moves are stored without handing back a
            # future: a receipt still means they survive a crash.
            future = self.broker.pending_write()
        self._receipts.add(future, (receipt, frame))

    def _release_receipt(self, pending: tuple[Frame | str | None, Frame]) -> None:
        answer = pending[0]
        if answer is not None and self.link is not None:
            self._answer(answer)
        if self._closing and not self._receipts:
            self._close_when_receipts_done()

    def _receipt_failed(self, pending: tuple[Frame | str | None, Frame]) -> None:
        self._fatal("The broker could not store the message", pending[1])

    def _close_when_receipts_done(self) -> None:
        if not self._receipts and self.link is not None:
            self._close_core()
            self.link.close()

    def _error(self, text: str, frame: Frame) -> None:
        """Refuse ``frame`` with an ERROR naming the problem; the connection goes on.

        ActiveMQ's answer to a request it cannot serve (an ACK for a message not awaiting
        one, an unknown transaction, a bad header): the client's subscriptions, pending
        acks and later frames are unaffected. Queued behind earlier receipts, in order.
        """
        if self.connection is None or self.link is None:
            self._fatal(text, frame)
            return
        log.info("STOMP %s from %s refused with an ERROR", frame.command, self.link.peer)
        error = self._error_frame(text, frame)
        if self._receipts:
            self._receipts.add(None, (error, frame))
        else:
            with contextlib.suppress(StompError):
                self.codec.send(error)
            self._flush()

    def _error_frame(self, text: str, frame: Frame | None) -> Frame:
        headers = [("message", text)]
        receipt = frame.get("receipt") if frame is not None else None
        if receipt is not None:
            headers.append(("receipt-id", receipt))
        if self.connection is None and text.startswith("Supported protocol versions"):
            headers.append(("version", ",".join(SUPPORTED_VERSIONS)))
        headers.append(("content-type", "text/plain"))
        return Frame("ERROR", tuple(headers), text.encode() + b"\n")

    def _fatal(self, text: str, frame: Frame | None = None) -> None:
        """Send an ERROR frame naming the problem, then close the connection."""
        if self.link is None:
            return
        error = self._error_frame(text, frame)
        self._closing = True
        self._busy = False
        self._events.clear()
        with contextlib.suppress(StompError):
            self.codec.send(error)
        self._flush()
        self._close_core()
        self.link.close()

    def _write(self, frame: Frame) -> None:
        self.codec.send(frame)
        self._flush()

    def _answer(self, answer: Frame | str) -> None:
        """Write a queued answer: a RECEIPT for this id, or this (ERROR) frame."""
        if isinstance(answer, str):
            self.codec.send_receipt(answer)
            self._flush()
        else:
            self._write(answer)

    def _flush(self, nbytes: int = 0) -> None:
        self._last_sent = time.monotonic()
        if self.link is not None:
            self.link.schedule_flush(nbytes)

    def _close_core(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
        for sub in self._subs.values():
            if sub.consumer is not None:
                sub.consumer.closed = True


#: Destinations whose ``destination`` header reads the same on every connection.
_SAME_HEADER_KINDS = frozenset({DestinationKind.QUEUE, DestinationKind.TOPIC})

_SHARED: weakref.WeakKeyDictionary[Broker, SharedEncoding] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _shared_encoding(broker: Broker) -> SharedEncoding:
    """The one MESSAGE-tail cache of ``broker``'s STOMP sessions (one per broker, so
    brokers running in other threads of the process never share one)."""
    with _SHARED_LOCK:
        shared = _SHARED.get(broker)
        if shared is None:
            shared = _SHARED[broker] = SharedEncoding()
        return shared


_PREFIXES: tuple[tuple[str, DestinationKind | None], ...] = (
    ("/queue/", DestinationKind.QUEUE),
    ("/topic/", DestinationKind.TOPIC),
    ("/temp-queue/", None),
    ("/temp-topic/", DestinationKind.TEMP_TOPIC),
    ("/remote-temp-queue/", DestinationKind.TEMP_QUEUE),
    ("/remote-temp-topic/", DestinationKind.TEMP_TOPIC),
)


def _split_destination(header: str) -> tuple[DestinationKind | None, str] | None:
    for prefix, kind in _PREFIXES:
        if header.startswith(prefix):
            return kind, header[len(prefix) :]
    return None


def _parse_heartbeat(value: str | None) -> tuple[int, int]:
    """CONNECT's ``heart-beat``: what the client can send and wants, in ms."""
    try:
        cx, cy = (int(part) for part in (value or "0,0").split(","))
    except ValueError:
        raise _ClientError("heart-beat header must be two integers", fatal=True) from None
    if cx < 0 or cy < 0:
        raise _ClientError("heart-beat values must not be negative", fatal=True)
    return cx, cy


def _composite_part(part: str) -> str:
    """One part of a STOMP composite destination as the core names it."""
    if part.startswith("/queue/"):
        return "queue://" + part[len("/queue/") :]
    if part.startswith("/topic/"):
        return "topic://" + part[len("/topic/") :]
    return part


def _flag(frame: Frame, name: str) -> bool:
    return (frame.get(name) or "false").lower() == "true"


def _int_header(name: str, value: str | None, low: int, high: int | None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise _ClientError(f"header {name} must be an integer") from None
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _ClientError(f"header {name} must be {bound}")
    return number


def _log_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("STOMP login task failed", exc_info=task.exception())


def _unexpected_ack(command: str, message_id: str) -> str:
    # ActiveMQ's words, so that clients matching on them keep working.
    return (
        f"Unexpected {command} received for message-id [{message_id}]: it is not "
        "awaiting acknowledgement on that subscription"
    )
