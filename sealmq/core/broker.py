"""The protocol-neutral broker: destinations, subscriptions, acks, redelivery and transactions.

Adapters open a :class:`Connection` per client connection and call its
methods; they get messages back through the :class:`DeliverySink` of each
consumer. Everything runs on the event loop thread; only the store's
durability wait is asynchronous, surfaced as futures the adapter awaits
before confirming a persistent send to its producer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sealmq.core.errors import BrokerError, DestinationError, SubscriptionError, TransactionError
from sealmq.core.model import (
    Destination,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
    durable_key,
    queue_key,
)
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    MessageStore,
    Op,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
)
from sealmq.core.queues import AckMode, Consumer, DeliverySink, Entry, MessageQueue
from sealmq.core.wildcards import matches

__all__ = ["Broker", "Connection", "Policy", "TopicSubscription"]

log = logging.getLogger("sealmq.core")

#: How often queues without consumers are swept for expired messages (ActiveMQ: 30 s).
EXPIRY_SWEEP_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Broker-wide delivery policy; the defaults are ActiveMQ's."""

    #: Redeliveries before a message goes to the dead-letter queue (ActiveMQ: 6); -1: never.
    maximum_redeliveries: int = 6
    dead_letter_queue: str = "ActiveMQ.DLQ"
    #: Wait before a redelivered message is offered again, in milliseconds.
    redelivery_delay_ms: int = 0
    #: Prefetch for consumers that name none (ActiveMQ's queue prefetch).
    default_prefetch: int = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TopicSubscription:
    """A topic subscription: its pattern and the queue that holds its messages."""

    __slots__ = ("connection_id", "info", "no_local", "pattern", "queue", "shared_key")

    def __init__(
        self,
        pattern: str,
        queue: MessageQueue,
        *,
        info: DurableSubscriptionInfo | None = None,
        no_local: bool = False,
        connection_id: str | None = None,
    ) -> None:
        self.pattern = pattern
        self.queue = queue
        self.info = info
        self.no_local = no_local
        #: The connection consuming now (None for an inactive durable subscription).
        self.connection_id = connection_id
        #: Set for a shared subscription (MQTT ``$share/<group>/<filter>``): its key.
        self.shared_key: str | None = None


@dataclass(slots=True)
class _Transaction:
    sends: list[Message] = field(default_factory=list)
    acks: list[Entry] = field(default_factory=list)


class Broker:
    """Destinations and subscriptions of one broker, on one event loop."""

    def __init__(
        self,
        store: MessageStore,
        *,
        policy: Policy | None = None,
        broker_id: str = "sealmq",
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.store = store
        self.policy = policy or Policy()
        self.broker_id = broker_id
        self.now_ms = clock
        self.queues: dict[str, MessageQueue] = {}
        self.durable: dict[str, TopicSubscription] = {}
        self.topic_subscriptions: list[TopicSubscription] = []
        self.connections: dict[str, Connection] = {}
        self._client_ids: dict[str, Connection] = {}
        self._match_cache: dict[str, list[TopicSubscription]] = {}
        #: The retained message of each topic that has one (MQTT retain).
        self.retained: dict[str, Message] = {}
        #: Opaque per-session state adapters keep across restarts, by key.
        self.sessions: dict[str, bytes] = {}
        #: Shared subscriptions by group and pattern.
        self.shared: dict[str, TopicSubscription] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"ID:{broker_id}-{secrets.token_hex(4)}"
        self._batch: list[Op] | None = None
        self._batch_future: asyncio.Future[None] | None = None
        self._batch_sync = False
        self._sweeper: asyncio.TimerHandle | None = None
        #: Called with the exception when the store fails to write: the broker must stop.
        self.on_store_failure: Callable[[BaseException], None] | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Rebuild queues and durable subscriptions from the store; start the expiry sweep."""
        state = self.store.recover()
        for info in state.subscriptions:
            self._add_durable(info)
        orphans: list[Op] = []
        for stored in state.messages:
            message = stored.message
            for owner in stored.owners:
                queue = self._queue_for_owner(owner)
                if queue is None:
                    orphans.append(RemoveMessage(message.message_id, owner))
                    continue
                queue.enqueue(Entry(message, queue, message.redelivery_count))
        if orphans:
            self._write(orphans)
        for message in state.retained:
            self.retained[message.destination.name] = message
        self.sessions.update(state.sessions)
        log.info(
            "recovered %d messages, %d durable subscriptions",
            len(state.messages),
            len(state.subscriptions),
        )
        self._schedule_sweep()

    async def close(self) -> None:
        for connection in list(self.connections.values()):
            connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._batch is not None:
            self._flush()
        await self.store.close()

    def _queue_for_owner(self, owner: str) -> MessageQueue | None:
        if owner.startswith("queue:"):
            return self._queue(owner[len("queue:") :])
        sub = self.durable.get(owner)
        return sub.queue if sub is not None else None

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(EXPIRY_SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self.sweep_expired()
        self._schedule_sweep()

    def sweep_expired(self) -> None:
        now = self.now_ms()
        for queue in list(self.queues.values()):
            queue.remove_expired(now)
        for sub in self.topic_subscriptions:
            sub.queue.remove_expired(now)

    # ----------------------------------------------------------------- connections

    def connect(
        self,
        *,
        client_id: str | None = None,
        username: str | None = None,
        takeover: bool = False,
    ) -> Connection:
        """Open the core side of a client connection.

        A ``client_id`` already connected is refused with :class:`SubscriptionError`
        (ActiveMQ's rule for JMS and STOMP), unless ``takeover``: then the older
        connection is told through its ``on_taken_over`` callback and closed (MQTT).
        """
        if client_id is not None and client_id in self._client_ids:
            if not takeover:
                raise SubscriptionError(f"client id {client_id!r} is already connected")
            older = self._client_ids[client_id]
            older.close()
            if older.on_taken_over is not None:
                older.on_taken_over()
        connection = Connection(self, f"{self._id_prefix}-c{next(self._ids)}", client_id, username)
        self.connections[connection.id] = connection
        if client_id is not None:
            self._client_ids[client_id] = connection
        return connection

    def _disconnected(self, connection: Connection) -> None:
        self.connections.pop(connection.id, None)
        if connection.client_id is not None and self._client_ids.get(connection.client_id) is (
            connection
        ):
            del self._client_ids[connection.client_id]

    def new_message_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    # ----------------------------------------------------------------- destinations

    def _queue(self, name: str) -> MessageQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = MessageQueue(name, queue_key(name), self)
            self.queues[name] = queue
        return queue

    def _temp_queue(self, name: str) -> MessageQueue:
        queue = self.queues.get(name)
        if queue is None:
            raise DestinationError(f"temporary queue {name} does not exist")
        return queue

    def _matching(self, topic: str) -> list[TopicSubscription]:
        subs = self._match_cache.get(topic)
        if subs is None:
            subs = [s for s in self.topic_subscriptions if matches(s.pattern, topic)]
            if len(self._match_cache) > 10_000:
                self._match_cache.clear()
            self._match_cache[topic] = subs
        return subs

    def _subscriptions_changed(self) -> None:
        self._match_cache.clear()

    # ----------------------------------------------------------------- sending

    def _route(self, message: Message) -> tuple[list[Op], list[tuple[MessageQueue, Entry]]]:
        """Where ``message`` goes: the store ops to make it durable and the entries to enqueue."""
        destination = message.destination
        if destination.is_wildcard:
            raise DestinationError(f"cannot send to the wildcard destination {destination.name}")
        if destination.is_queue:
            if destination.kind is DestinationKind.TEMP_QUEUE:
                queue = self._temp_queue(destination.name)
            else:
                queue = self._queue(destination.name)
            ops: list[Op] = []
            if message.persistent and queue.owner is not None:
                ops.append(AddMessage(message, (queue.owner,)))
            return ops, [(queue, Entry(message, queue))]
        targets = []
        owners = []
        for sub in self._matching(destination.name):
            if sub.no_local and sub.connection_id == message.origin:
                continue
            targets.append((sub.queue, Entry(message, sub.queue)))
            if message.persistent and sub.queue.owner is not None:
                owners.append(sub.queue.owner)
        return ([AddMessage(message, tuple(owners))] if owners else []), targets

    def send(self, message: Message) -> asyncio.Future[None] | None:
        """Route ``message``; returns a future for its durability, or None if nothing is stored."""
        ops, targets = self._route(message)
        if message.retain and message.destination.is_topic:
            ops.append(self._retain(message))
        future = self._write(ops) if ops else None
        now = self.now_ms()
        for queue, entry in targets:
            queue.enqueue(entry)
            queue.dispatch(now)
        return future

    def _retain(self, message: Message) -> Op:
        """Keep ``message`` as its topic's retained message; an empty body clears it."""
        topic = message.destination.name
        if message.body:
            self.retained[topic] = message
            return SetRetained(topic, message)
        self.retained.pop(topic, None)
        return SetRetained(topic, None)

    def retained_for(self, pattern: str) -> list[Message]:
        """Live retained messages on topics ``pattern`` selects."""
        now = self.now_ms()
        return [
            message
            for topic, message in self.retained.items()
            if matches(pattern, topic) and not message.expired(now)
        ]

    # ----------------------------------------------------------------- sessions

    def set_session_state(self, key: str, state: bytes | None) -> asyncio.Future[None]:
        """Store (or with None, forget) an adapter's session state; durable when the future is."""
        if state is None:
            self.sessions.pop(key, None)
        else:
            self.sessions[key] = state
        return self._write([SetSessionState(key, state)])

    def durable_subscriptions(self, client_id: str) -> list[DurableSubscriptionInfo]:
        """Every durable subscription of ``client_id`` (an MQTT persistent session's)."""
        return [
            sub.info
            for sub in self.durable.values()
            if sub.info is not None and sub.info.client_id == client_id
        ]

    def is_connected(self, client_id: str) -> bool:
        return client_id in self._client_ids

    # ----------------------------------------------------------------- store batching

    def _write(self, ops: list[Op], *, sync: bool = True) -> asyncio.Future[None]:
        """Queue ``ops`` for the store; everything queued in one loop tick is one record.

        ``sync=False`` for acks nobody waits on: a batch of only those costs no fsync
        (a crash may redeliver such a message, never lose one).
        """
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = []
            self._batch_future = loop.create_future()
            loop.call_soon(self._flush)
        self._batch.extend(ops)
        self._batch_sync = self._batch_sync or sync
        assert self._batch_future is not None
        return self._batch_future

    def pending_write(self) -> asyncio.Future[None] | None:
        """Durability of everything queued for the store so far in this loop tick, if any.

        Adapters wait on it before confirming a request whose effect (an ack, a DLQ move)
        the core stored without handing back a future.
        """
        if self._batch_future is not None:
            # Somebody will confirm on it: it must mean durable.
            self._batch_sync = True
        return self._batch_future

    def _flush(self) -> None:
        ops, future, sync = self._batch, self._batch_future, self._batch_sync
        self._batch = self._batch_future = None
        self._batch_sync = False
        if not ops or future is None:
            return
        try:
            written = self.store.write(ops, sync=sync)
        except Exception as exc:
            self._store_failed(future, exc)
            return

        def done(f: asyncio.Future[None]) -> None:
            if f.cancelled():
                self._store_failed(future, asyncio.CancelledError())
            elif (exc := f.exception()) is not None:
                self._store_failed(future, exc)
            elif not future.done():
                future.set_result(None)

        written.add_done_callback(done)

    def _store_failed(self, future: asyncio.Future[None], exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)
            # Producers may have dropped the future; never warn "exception never retrieved".
            future.exception()
        log.critical("store write failed: %s", type(exc).__name__)
        if self.on_store_failure is not None:
            self.on_store_failure(exc)

    # ----------------------------------------------------------------- acks and redelivery

    def _settle(self, entries: Iterable[Entry]) -> list[Op]:
        return [
            RemoveMessage(e.message.message_id, e.queue.owner)
            for e in entries
            if e.message.persistent and e.queue.owner is not None
        ]

    def entry_consumed(self, entry: Entry) -> None:
        """An auto-ack delivery: the message is done with as soon as it is sent."""
        if entry.message.persistent and entry.queue.owner is not None:
            self._write([RemoveMessage(entry.message.message_id, entry.queue.owner)], sync=False)

    def entry_expired(self, entry: Entry) -> None:
        self._dead_letter(entry, "Message expired")

    def acknowledge(self, entries: list[Entry]) -> None:
        ops = self._settle(entries)
        if ops:
            self._write(ops, sync=False)

    def redeliver(self, entries: list[Entry]) -> None:
        """Offer ``entries`` again, or dead-letter those past the redelivery limit."""
        retry: dict[MessageQueue, list[Entry]] = {}
        limit = self.policy.maximum_redeliveries
        for entry in entries:
            entry.redeliveries += 1
            if 0 <= limit < entry.redeliveries:
                self._dead_letter(
                    entry,
                    f"Delivery[{entry.redeliveries}] exceeds redelivery policy limit",
                )
            elif self._queue_alive(entry.queue):
                retry.setdefault(entry.queue, []).append(entry)
        delay = self.policy.redelivery_delay_ms
        for queue, batch in retry.items():
            if delay > 0:
                asyncio.get_running_loop().call_later(delay / 1000, self._requeue, queue, batch)
            else:
                self._requeue(queue, batch)

    def _requeue(self, queue: MessageQueue, entries: list[Entry]) -> None:
        if not self._queue_alive(queue):
            return
        queue.requeue_front(entries)
        queue.dispatch(self.now_ms())

    def _queue_alive(self, queue: MessageQueue) -> bool:
        return not (queue.owner is None and not queue.consumers and queue.name not in self.queues)

    def _dead_letter(self, entry: Entry, cause: str) -> None:
        """Move ``entry`` to the DLQ (persistent messages) or drop it (ActiveMQ's default)."""
        message = entry.message
        ops: list[Op] = self._settle([entry])
        dlq = self.policy.dead_letter_queue
        if message.persistent and message.destination.name != dlq:
            queue = self._queue(dlq)
            copy = dataclasses.replace(
                message,
                message_id=self.new_message_id(),
                destination=Destination.queue(dlq),
                original_destination=message.destination,
                expiration=0,
                redelivery_count=entry.redeliveries,
                properties={
                    **message.properties,
                    "dlqDeliveryFailureCause": cause,
                    "originalMessageId": message.message_id,
                },
            )
            assert queue.owner is not None
            ops.append(AddMessage(copy, (queue.owner,)))
            queue.enqueue(Entry(copy, queue))
            queue.dispatch(self.now_ms())
        if ops:
            self._write(ops)

    # ----------------------------------------------------------------- durable subscriptions

    def _add_durable(self, info: DurableSubscriptionInfo) -> TopicSubscription:
        queue = MessageQueue(info.key, info.key, self, exclusive=True, durable=True)
        sub = TopicSubscription(info.destination.name, queue, info=info, no_local=info.no_local)
        self.durable[info.key] = sub
        self.topic_subscriptions.append(sub)
        self._subscriptions_changed()
        return sub

    def _drop_subscription(self, sub: TopicSubscription) -> None:
        self.topic_subscriptions.remove(sub)
        self._subscriptions_changed()
        if sub.info is not None:
            self.durable.pop(sub.info.key, None)

    def remove_durable(self, client_id: str, name: str) -> None:
        """Delete an inactive durable subscription and its messages."""
        sub = self.durable.get(durable_key(client_id, name))
        if sub is None:
            raise SubscriptionError(f"no durable subscription {name!r} for client {client_id!r}")
        if sub.queue.consumers:
            raise SubscriptionError(f"durable subscription {name!r} is active")
        self._drop_subscription(sub)
        sub.queue.drain()
        self._write([RemoveSubscription(client_id, name)])


class Connection:
    """The core side of one client connection: its consumers, transactions and temp queues."""

    def __init__(
        self, broker: Broker, connection_id: str, client_id: str | None, username: str | None
    ) -> None:
        self.broker = broker
        self.id = connection_id
        self.client_id = client_id
        self.username = username
        self.consumers: dict[str, Consumer] = {}
        self.transactions: dict[str, _Transaction] = {}
        self.temp_queues: set[str] = set()
        self._subs: dict[str, TopicSubscription] = {}
        self.closed = False
        #: Called when a newer connection with the same client id takes over (MQTT).
        self.on_taken_over: Callable[[], None] | None = None

    # ----------------------------------------------------------------- temp queues

    def create_temp_queue(self, local_name: str) -> Destination:
        """A temporary queue owned by this connection; deleted when it closes."""
        name = f"{self.id}:{local_name}"
        if name not in self.broker.queues:
            # Temp queues are never persisted (owner None), as in ActiveMQ.
            self.broker.queues[name] = MessageQueue(name, None, self.broker)
            self.temp_queues.add(name)
        return Destination(DestinationKind.TEMP_QUEUE, name)

    # ----------------------------------------------------------------- sending

    def send(self, message: Message, transaction: str | None = None) -> asyncio.Future[None] | None:
        message.origin = self.id
        if transaction is not None:
            tx = self._tx(transaction)
            # Validate now so the producer hears of a bad destination at SEND, not at COMMIT.
            self.broker._route(message)
            tx.sends.append(message)
            return None
        return self.broker.send(message)

    # ----------------------------------------------------------------- consuming

    def subscribe(
        self,
        consumer_id: str,
        destination: Destination,
        sink: DeliverySink,
        *,
        tag: object = None,
        ack_mode: AckMode = AckMode.AUTO,
        prefetch: int | None = None,
        durable_name: str | None = None,
        selector: str | None = None,
        no_local: bool = False,
        retained: bool = False,
        shared_group: str | None = None,
        options: bytes = b"",
    ) -> Consumer:
        """Start consuming; messages flow to ``sink`` at once if any are waiting.

        ``retained``: also deliver the retained messages of the topics the subscription
        selects (MQTT). ``shared_group``: join the group's shared subscription, whose
        messages are spread over its members. ``options`` is stored with a durable
        subscription for the adapter.
        """
        if consumer_id in self.consumers:
            raise SubscriptionError(f"subscription id {consumer_id!r} is already in use")
        broker = self.broker
        consumer = Consumer(
            consumer_id,
            self.id,
            sink,
            tag=tag,
            ack_mode=ack_mode,
            prefetch=prefetch if prefetch is not None else broker.policy.default_prefetch,
            no_local=no_local,
        )
        if destination.is_queue:
            if destination.is_wildcard:
                raise DestinationError("consuming from a wildcard queue is not supported")
            if destination.kind is DestinationKind.TEMP_QUEUE:
                queue = broker._temp_queue(destination.name)
            else:
                queue = broker._queue(destination.name)
        elif durable_name is not None:
            queue = self._attach_durable(destination, durable_name, selector, no_local, options)
        elif shared_group is not None:
            key = f"{shared_group}\x00{destination.name}"
            sub = broker.shared.get(key)
            if sub is None:
                sub = TopicSubscription(
                    destination.name, MessageQueue(destination.name, None, broker)
                )
                sub.shared_key = key
                broker.shared[key] = sub
                broker.topic_subscriptions.append(sub)
                broker._subscriptions_changed()
            self._subs[consumer_id] = sub
            queue = sub.queue
        else:
            queue = MessageQueue(destination.name, None, broker, exclusive=True)
            sub = TopicSubscription(
                destination.name, queue, no_local=no_local, connection_id=self.id
            )
            broker.topic_subscriptions.append(sub)
            broker._subscriptions_changed()
            self._subs[consumer_id] = sub
        consumer.queue = queue
        queue.consumers.append(consumer)
        self.consumers[consumer_id] = consumer
        if retained and destination.is_topic:
            for message in broker.retained_for(destination.name):
                queue.enqueue(Entry(message, queue, retained=True))
        queue.dispatch(broker.now_ms())
        return consumer

    def _attach_durable(
        self,
        destination: Destination,
        name: str,
        selector: str | None,
        no_local: bool,
        options: bytes,
    ) -> MessageQueue:
        broker = self.broker
        if self.client_id is None:
            raise SubscriptionError("a durable subscription needs a client id on the connection")
        info = DurableSubscriptionInfo(
            self.client_id, name, destination, selector, no_local, options
        )
        sub = broker.durable.get(info.key)
        if sub is not None and sub.queue.consumers:
            raise SubscriptionError(f"durable subscription {name!r} is already active")
        if (
            sub is not None
            and sub.info is not None
            and sub.info.options != options
            and (dataclasses.replace(sub.info, options=options) == info)
        ):
            # Only the adapter's options changed (an MQTT QoS upgrade): keep the messages.
            sub.info = info
            broker._write([AddSubscription(info)])
        if sub is not None and sub.info != info:
            # ActiveMQ: resubscribing with another topic or selector replaces the subscription.
            broker.remove_durable(self.client_id, name)
            sub = None
        if sub is None:
            sub = broker._add_durable(info)
            broker._write([AddSubscription(info)])
        sub.connection_id = self.id
        self._subs[f"durable:{name}"] = sub
        return sub.queue

    def unsubscribe(self, consumer_id: str) -> None:
        """Stop a consumer; its unacknowledged messages are redelivered."""
        consumer = self.consumers.pop(consumer_id, None)
        if consumer is None:
            raise SubscriptionError(f"no subscription with id {consumer_id!r}")
        self._close_consumer(consumer_id, consumer)

    def _close_consumer(self, consumer_id: str, consumer: Consumer) -> None:
        consumer.closed = True
        queue = consumer.queue
        unacked = list(consumer.in_flight.values())
        consumer.in_flight.clear()
        if queue is not None:
            queue.forget_consumer(consumer)
        sub = self._subs.pop(consumer_id, None)
        if sub is not None and sub.shared_key is not None:
            if not sub.queue.consumers:
                self.broker.shared.pop(sub.shared_key, None)
                self.broker._drop_subscription(sub)
        elif sub is not None and sub.info is None:
            self.broker._drop_subscription(sub)
        if queue is not None and queue.durable:
            for key, durable_sub in list(self._subs.items()):
                if durable_sub.queue is queue:
                    durable_sub.connection_id = None
                    del self._subs[key]
        if unacked:
            self.broker.redeliver(unacked)
        if queue is not None:
            queue.dispatch(self.broker.now_ms())

    def remove_durable(self, name: str) -> None:
        if self.client_id is None:
            raise SubscriptionError("removing a durable subscription needs a client id")
        self.broker.remove_durable(self.client_id, name)

    def resume(self, consumer: Consumer) -> None:
        """The adapter's transport can take more: dispatch again."""
        consumer.paused = False
        if consumer.queue is not None:
            consumer.queue.dispatch(self.broker.now_ms())

    def ack(
        self, consumer: Consumer, message_id: str, *, cumulative: bool, transaction: str | None
    ) -> bool:
        """Acknowledge one delivery (or all up to it); False if it was not in flight."""
        entries = consumer.take_through(message_id) if cumulative else consumer.take([message_id])
        if not entries:
            return False
        if transaction is not None:
            self._tx(transaction).acks.extend(entries)
        else:
            self.broker.acknowledge(entries)
        if consumer.queue is not None:
            consumer.queue.dispatch(self.broker.now_ms())
        return True

    def nack(
        self, consumer: Consumer, message_id: str, *, cumulative: bool, transaction: str | None
    ) -> bool:
        """Reject one delivery (or all up to it): redelivered, or dead-lettered past the limit."""
        if transaction is not None:
            self._tx(transaction)
        entries = consumer.take_through(message_id) if cumulative else consumer.take([message_id])
        if not entries:
            return False
        self.broker.redeliver(entries)
        return True

    # ----------------------------------------------------------------- transactions

    def _tx(self, transaction: str) -> _Transaction:
        tx = self.transactions.get(transaction)
        if tx is None:
            raise TransactionError(f"transaction {transaction!r} is not active")
        return tx

    def begin(self, transaction: str) -> None:
        if transaction in self.transactions:
            raise TransactionError(f"transaction {transaction!r} is already active")
        self.transactions[transaction] = _Transaction()

    def commit(self, transaction: str) -> asyncio.Future[None] | None:
        """Apply the transaction's sends and acks as one atomic store record."""
        tx = self.transactions.pop(transaction, None)
        if tx is None:
            raise TransactionError(f"transaction {transaction!r} is not active")
        broker = self.broker
        ops: list[Op] = broker._settle(tx.acks)
        deliveries: list[tuple[MessageQueue, Entry]] = []
        for message in tx.sends:
            try:
                send_ops, targets = broker._route(message)
            except BrokerError:
                # The destination went away since SEND (a temp queue closed): like ActiveMQ,
                # that message is dropped and the rest of the transaction commits.
                continue
            ops.extend(send_ops)
            if message.retain and message.destination.is_topic:
                ops.append(broker._retain(message))
            deliveries.extend(targets)
        future = broker._write(ops) if ops else None
        now = broker.now_ms()
        for queue, entry in deliveries:
            queue.enqueue(entry)
            queue.dispatch(now)
        return future

    def abort(self, transaction: str) -> None:
        """Drop the transaction's sends; its acknowledged messages are redelivered."""
        tx = self.transactions.pop(transaction, None)
        if tx is None:
            raise TransactionError(f"transaction {transaction!r} is not active")
        if tx.acks:
            self.broker.redeliver(tx.acks)

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Abort open transactions, redeliver unacked messages, delete temp queues."""
        if self.closed:
            return
        self.closed = True
        for transaction in list(self.transactions):
            self.abort(transaction)
        for consumer_id, consumer in list(self.consumers.items()):
            del self.consumers[consumer_id]
            self._close_consumer(consumer_id, consumer)
        for name in self.temp_queues:
            queue = self.broker.queues.pop(name, None)
            if queue is not None:
                queue.drain()
        self.broker._disconnected(self)
