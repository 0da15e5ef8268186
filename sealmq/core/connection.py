"""The core side of one client connection: consumers, settlement, transactions, temp queues."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sealmq.core.authorization import ADVISORY_PREFIX, Permission
from sealmq.core.errors import (
    AuthorizationError,
    BrokerError,
    DestinationError,
    LimitError,
    SubscriptionError,
    TransactionError,
)
from sealmq.core.events import DestinationCreated, DestinationRemoved, Subscribed, Unsubscribed
from sealmq.core.model import (
    Destination,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
    composite_parts,
)
from sealmq.core.ports import AddSubscription, Op
from sealmq.core.queues import (
    AckMode,
    Consumer,
    DeliverySink,
    Entry,
    MessageFilter,
    MessageQueue,
    Outcome,
)
from sealmq.core.security import Principal
from sealmq.core.session import Session
from sealmq.core.subscriptions import TopicSubscription

if TYPE_CHECKING:
    from sealmq.core.broker import Broker

__all__ = ["Connection", "SubscribeOptions"]

log = logging.getLogger("sealmq.security")

#: Destinations whose authorization answers one connection keeps (one dict lookup per
#: send); past it they are forgotten and asked again.
_AUTHORIZATIONS_KEPT = 1024
#: How ActiveMQ words each refusal ("User bob is not authorized to write to: queue://a").
_DENIED = {
    Permission.READ: "read from",
    Permission.WRITE: "write to",
    Permission.ADMIN: "create",
}


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """How a consumer consumes; every field's default is what a plain subscribe gets."""

    #: Opaque value the adapter gets back on the consumer (its subscription object).
    tag: object = None
    ack_mode: AckMode = AckMode.AUTO
    #: Unsettled deliveries at most; None: the policy's default; 0: a pull consumer,
    #: which receives only what ``Connection.pull`` / ``Connection.flow`` grant.
    prefetch: int | None = None
    #: A durable topic subscription's name (the connection needs a client id).
    durable_name: str | None = None
    #: A JMS message selector (``sealmq.core.selector``): on a queue, this consumer
    #: receives only what it selects; on a topic, the subscription holds only that.
    selector: str | None = None
    #: Which messages this consumer wants; the others go to other consumers or wait.
    filter: MessageFilter | None = None
    no_local: bool = False
    #: Also deliver the retained messages of the topics the subscription selects (MQTT).
    retained: bool = False
    #: Join this group's shared topic subscription (MQTT ``$share/<group>/...``).
    shared_group: str | None = None
    #: Stored with a durable subscription for the adapter (MQTT's subscription options).
    durable_options: bytes = b""
    #: Served before lower-priority consumers while it has credit (ActiveMQ's
    #: ``consumer.priority``, 0 by default).
    priority: int = 0
    #: Only one exclusive consumer of a queue receives; the next takes over when it goes.
    exclusive: bool = False
    #: Walk the queue without consuming; ``on_browse_end`` is called at its end.
    browse: bool = False
    #: Called when a drain completes: the consumer's credit is spent (AMQP drain).
    on_drained: Callable[[Consumer], None] | None = None
    on_browse_end: Callable[[Consumer], None] | None = None


@dataclass(slots=True)
class _Transaction:
    #: Each message sent, and whether it is to be retained.
    sends: list[tuple[Message, bool]] = field(default_factory=list)
    acks: list[Entry] = field(default_factory=list)


class Connection:
    """The core side of one client connection: its consumers, transactions and temp queues."""

    def __init__(
        self,
        broker: Broker,
        connection_id: str,
        client_id: str | None,
        principal: Principal | None,
        peer: str | None = None,
    ) -> None:
        self.broker = broker
        #: The client's address, for log lines.
        self.peer = peer
        self.id = connection_id
        self.client_id = client_id
        #: Who the client authenticated as (None: a core-internal connection).
        self.principal = principal
        self.username = principal.username if principal is not None else None
        self.consumers: dict[str, Consumer] = {}
        self.transactions: dict[str, _Transaction] = {}
        self.temp_queues: set[str] = set()
        self.temp_topics: set[str] = set()
        self._subs: dict[str, TopicSubscription] = {}
        self.sessions: dict[str, Session] = {}
        #: What each consumer consumes from, as it was named.
        self._destinations: dict[str, Destination] = {}
        self.closed = False
        #: Called when a newer connection with the same client id takes over (MQTT).
        self.on_taken_over: Callable[[], None] | None = None
        #: Authorization answers by (permission, kind, name): "" allowed, else the refusal.
        self._authorized: dict[tuple[Permission, DestinationKind, str], str] = {}
        #: Refusals already logged, so that a client repeating one does not flood the log.
        self._denials_logged: set[tuple[Permission, DestinationKind, str]] = set()

    # ----------------------------------------------------------------- authorization

    def authorize(self, permission: Permission, destination: Destination) -> None:
        """Raise :class:`AuthorizationError` unless this connection's user may do
        ``permission`` on ``destination`` (and create it, if this use would).

        Nothing is checked without an authorization map or for the broker's own
        connections (no principal). Adapters call it for what the core does later on
        the user's behalf (an MQTT will); sends and subscribes are checked here anyway.
        """
        if self.broker.authorization is None or self.principal is None:
            return
        key = (permission, destination.kind, destination.name)
        refusal = self._authorized.get(key)
        if refusal is None:
            refusal, final = self._decide(permission, destination)
            if final:
                if len(self._authorized) >= _AUTHORIZATIONS_KEPT:
                    self._authorized.clear()
                self._authorized[key] = refusal
        if refusal:
            if key not in self._denials_logged and len(self._denials_logged) < _AUTHORIZATIONS_KEPT:
                self._denials_logged.add(key)
                log.warning("denied: user %r from %s: %s", self.username, self.peer or "?", refusal)
            raise AuthorizationError(refusal)

    def forget_authorizations(self) -> None:
        """The map or the users changed: decide again at the next use."""
        self._authorized.clear()
        self._denials_logged.clear()

    def _decide(self, permission: Permission, destination: Destination) -> tuple[str, bool]:
        """The refusal ("" if allowed) and whether it may be remembered (an answer that
        depends on the destination not existing yet may change)."""
        authorization = self.broker.authorization
        principal = self.principal
        assert authorization is not None and principal is not None
        if (
            destination.is_temporary
            and permission is Permission.READ
            and not destination.name.startswith(self.id + ":")
        ):
            return self._refusal(permission, destination, " (another connection's)"), True
        advisory = destination.is_topic and destination.name.startswith(ADVISORY_PREFIX)
        if advisory and permission is not Permission.READ:
            # The broker's own topics: ActiveMQ publishes advisories in the user's security
            # context, so its users need write and admin on them; here the broker
            # publishes as itself, and a client's "advisory" would be a forgery.
            return self._refusal(
                permission, destination, " (advisory topics are the broker's)"
            ), True
        if not authorization.allows(principal, permission, destination):
            return self._refusal(permission, destination), True
        if (
            advisory
            or destination.is_temporary
            or destination.is_wildcard
            or self._exists(destination)
        ):
            return "", True
        # Its first use creates it: that needs admin (ActiveMQ's addDestination check).
        if not authorization.allows(principal, Permission.ADMIN, destination):
            return self._refusal(Permission.ADMIN, destination), False
        if destination.is_topic:
            self.broker.check_new_destination()
            self.broker.known_topics.add(destination.name)
        return "", True

    def _exists(self, destination: Destination) -> bool:
        if destination.is_queue:
            return destination.name in self.broker.queues
        return destination.name in self.broker.known_topics

    def _refusal(self, permission: Permission, destination: Destination, why: str = "") -> str:
        return (
            f"User {self.username} is not authorized to {_DENIED[permission]}: {destination}{why}"
        )

    # ----------------------------------------------------------------- sessions

    def create_session(self, session_id: str) -> Session:
        """A session of this connection (JMS, AMQP, OpenWire); closed with it."""
        if session_id in self.sessions:
            raise SubscriptionError(f"session id {session_id!r} is already in use")
        session = self.sessions[session_id] = Session(self, session_id)
        return session

    # ----------------------------------------------------------------- temp queues

    def create_temp_queue(self, local_name: str) -> Destination:
        """A temporary queue owned by this connection; deleted when it closes."""
        name = f"{self.id}:{local_name}"
        destination = Destination(DestinationKind.TEMP_QUEUE, name)
        if name not in self.broker.queues:
            self.authorize(Permission.ADMIN, destination)
            self.broker.check_new_destination()
            # Temp queues are never persisted (owner None), as in ActiveMQ.
            self.broker.queues[name] = MessageQueue(name, None, self.broker)
            self.temp_queues.add(name)
            self.broker.events.emit(DestinationCreated(destination))
        return destination

    def create_temp_topic(self, local_name: str) -> Destination:
        """A temporary topic owned by this connection; deleted when it closes. Sending to
        it, or subscribing to it, once deleted is refused (ActiveMQ's rule)."""
        name = f"{self.id}:{local_name}"
        destination = Destination(DestinationKind.TEMP_TOPIC, name)
        if name not in self.broker.temp_topics:
            self.authorize(Permission.ADMIN, destination)
            self.broker.check_new_destination()
            self.broker.temp_topics.add(name)
            self.temp_topics.add(name)
            self.broker.events.emit(DestinationCreated(destination))
        return destination

    def delete_temp(self, destination: Destination) -> None:
        """Delete one of this connection's temporary destinations before it closes (JMS
        ``TemporaryQueue.delete``); refused while a consumer still uses it (ActiveMQ's
        rule) or if it is not this connection's."""
        name = destination.name
        if destination.kind is DestinationKind.TEMP_QUEUE:
            owned = self.temp_queues
            queue = self.broker.queues.get(name)
            if name not in owned or queue is None:
                raise DestinationError(f"temporary queue {name} is not this connection's")
            if queue.consumers:
                raise DestinationError(f"temporary queue {name} has active consumers")
            del self.broker.queues[name]
            queue.drain()
        elif destination.kind is DestinationKind.TEMP_TOPIC:
            owned = self.temp_topics
            if name not in owned:
                raise DestinationError(f"temporary topic {name} is not this connection's")
            if any(d == destination for d in self._destinations.values()):
                raise DestinationError(f"temporary topic {name} has active consumers")
            self.broker.temp_topics.discard(name)
        else:
            raise DestinationError(f"{destination} is not a temporary destination")
        owned.discard(name)
        self.broker.events.emit(DestinationRemoved(destination))

    # ----------------------------------------------------------------- sending

    def send(
        self, message: Message, transaction: str | None = None, *, retain: bool = False
    ) -> asyncio.Future[None] | None:
        """Send ``message`` as this connection's user (the core stamps its id, timestamp
        and ``user_id``); ``retain``: make it its topic's retained message too (MQTT)."""
        broker = self.broker
        destination = message.destination
        parts: tuple[Destination, ...] | list[Destination] = (destination,)
        if "," in destination.name:
            # A composite destination: each part, as if sent to each.
            try:
                parts = composite_parts(destination) or parts
            except ValueError as exc:
                raise DestinationError(str(exc)) from None
        for target in parts:
            if target.kind is DestinationKind.QUEUE and target.name not in broker.queues:
                broker.check_new_destination()
            if broker.authorization is not None:
                self.authorize(Permission.WRITE, target)
        message.origin = self.id
        if transaction is not None:
            tx = self._tx(transaction)
            broker = self.broker
            broker._stamp(message, self.username)
            for part in broker.composite_parts(message) or (message,):
                # Validate now so the producer hears of a bad destination or schedule at
                # SEND, not at COMMIT.
                broker.check_schedule(part)
                broker._route(part)
                tx.sends.append((part, retain))
            return None
        return self.broker.send(message, retain=retain, user=self.username)

    # ----------------------------------------------------------------- consuming

    def subscribe(
        self,
        consumer_id: str,
        destination: Destination,
        sink: DeliverySink,
        options: SubscribeOptions | None = None,
    ) -> Consumer:
        """Start consuming; what is waiting flows to ``sink`` in this tick's dispatch.

        A selector that does not parse is refused with :class:`SubscriptionError`
        naming the column and the problem; ``options.filter`` is a predicate that
        applies on top of it.
        """
        opts = options if options is not None else _DEFAULT_OPTIONS
        selected = _selector(opts.selector)
        if consumer_id in self.consumers:
            raise SubscriptionError(f"subscription id {consumer_id!r} is already in use")
        broker = self.broker
        limit = broker.limits.max_subscriptions_per_connection
        if limit and len(self.consumers) >= limit:
            raise LimitError(f"a connection may hold at most {limit} subscriptions")
        if destination.kind is DestinationKind.QUEUE and destination.name not in broker.queues:
            broker.check_new_destination()
        if broker.authorization is not None:
            self.authorize(Permission.READ, destination)
        prefetch = opts.prefetch
        policy = broker.policies.for_destination(destination)
        if prefetch is None:
            prefetch = max(1, policy.default_prefetch)
        consumer = Consumer(
            consumer_id,
            self.id,
            sink,
            tag=opts.tag,
            ack_mode=opts.ack_mode,
            prefetch=prefetch,
            no_local=opts.no_local,
            # On a topic the subscription applies the selector as messages arrive, so
            # what it does not select is never held for it.
            filter=_both(opts.filter, selected if destination.is_queue else None),
            priority=opts.priority,
            exclusive=opts.exclusive,
            browser=opts.browse,
            on_drained=opts.on_drained,
            on_browse_end=opts.on_browse_end,
        )
        if "," in destination.name and not destination.is_temporary:
            raise SubscriptionError(
                f"consuming from a composite destination ({destination.name}) is not "
                "supported: subscribe to each of its destinations"
            )
        if destination.is_topic:
            broker.note_topic_subscription(destination.name)
        if opts.browse and not destination.is_queue:
            raise SubscriptionError("only queues can be browsed")
        if destination.kind is DestinationKind.TEMP_TOPIC:
            broker.temp_topic(destination.name)  # refused once deleted
        if destination.is_queue:
            if destination.is_wildcard:
                raise DestinationError("consuming from a wildcard queue is not supported")
            if destination.kind is DestinationKind.TEMP_QUEUE:
                queue = broker._temp_queue(destination.name)
            else:
                queue = broker._queue(destination.name)
        elif opts.durable_name is not None:
            queue = self._attach_durable(destination, opts)
        elif opts.shared_group is not None:
            key = f"{opts.shared_group}\x00{destination.name}"
            sub = broker.shared.get(key)
            if sub is None:
                sub = TopicSubscription(
                    destination.name,
                    MessageQueue(destination.name, None, broker),
                    selector=selected,
                )
                sub.queue.pending_limit = policy.pending_message_limit
                sub.shared_key = key
                broker.shared[key] = sub
                broker.topic_subscriptions.append(sub)
                broker._subscriptions_changed()
            self._subs[consumer_id] = sub
            queue = sub.queue
        else:
            queue = MessageQueue(destination.name, None, broker, exclusive=True)
            queue.pending_limit = policy.pending_message_limit
            sub = TopicSubscription(
                destination.name,
                queue,
                no_local=opts.no_local,
                connection_id=self.id,
                selector=selected,
            )
            broker.topic_subscriptions.append(sub)
            broker._subscriptions_changed()
            self._subs[consumer_id] = sub
        self.consumers[consumer_id] = consumer
        self._destinations[consumer_id] = destination
        if opts.retained and destination.is_topic:
            for message in broker.retained_for(destination.name):
                queue.enqueue(Entry(message, queue, retained=True))
        queue.add_consumer(consumer)
        broker.events.emit(
            Subscribed(self.id, consumer_id, destination, opts.durable_name, opts.browse)
        )
        return consumer

    def _attach_durable(self, destination: Destination, opts: SubscribeOptions) -> MessageQueue:
        broker = self.broker
        name = opts.durable_name
        assert name is not None
        if self.client_id is None:
            raise SubscriptionError("a durable subscription needs a client id on the connection")
        options = opts.durable_options
        info = DurableSubscriptionInfo(
            self.client_id, name, destination, opts.selector, opts.no_local, options
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
        broker.claim_session(self.client_id, self.username)
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
        consumer.delivered.clear()
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
        destination = self._destinations.pop(consumer_id, None)
        if destination is not None:
            self.broker.events.emit(Unsubscribed(self.id, consumer_id, destination))

    def remove_durable(self, name: str) -> None:
        if self.client_id is None:
            raise SubscriptionError("removing a durable subscription needs a client id")
        self.broker.remove_durable(self.client_id, name)

    # ----------------------------------------------------------------- credit

    def resume(self, consumer: Consumer) -> None:
        """The adapter's transport can take more: dispatch again."""
        consumer.paused = False
        if consumer.queue is not None:
            consumer.queue.wake()

    def pull(self, consumer: Consumer, count: int = 1, *, drain: bool = False) -> None:
        """Grant a pull consumer (prefetch 0) ``count`` more messages (OpenWire
        ``MessagePull``); ``drain``: what cannot be served now is reported spent."""
        if consumer.queue is not None:
            consumer.queue.pull(consumer, count, drain=drain)

    def flow(self, consumer: Consumer, credit: int, *, drain: bool = False) -> None:
        """Set a pull consumer's credit (AMQP link credit); ``drain``: use it now or
        report it spent through ``on_drained``."""
        if consumer.queue is not None:
            consumer.queue.flow(consumer, credit, drain=drain)

    # ----------------------------------------------------------------- settlement

    def settle(
        self,
        consumer: Consumer,
        message_id: str,
        outcome: Outcome,
        *,
        cumulative: bool = False,
        transaction: str | None = None,
        undeliverable_here: bool = False,
    ) -> bool:
        """Settle one delivery (or, ``cumulative``, all up to it) with ``outcome``; False
        if it was not in flight. ``undeliverable_here`` (released or modified): never to
        this consumer again. In a transaction only ``ACCEPTED`` waits for the commit."""
        # An unknown transaction is refused before anything is taken from the consumer.
        tx = self._tx(transaction) if transaction is not None else None
        if outcome is Outcome.DELIVERED or outcome is Outcome.REDELIVERED:
            return self._mark(consumer, message_id, outcome, cumulative=cumulative)
        entries = consumer.take_through(message_id) if cumulative else consumer.take([message_id])
        if not entries:
            return False
        if tx is not None and outcome is Outcome.ACCEPTED:
            tx.acks.extend(entries)
        else:
            self.broker.settle(entries, outcome, exclude=consumer if undeliverable_here else None)
        if consumer.queue is not None:
            consumer.queue.wake()
        return True

    def _mark(
        self, consumer: Consumer, message_id: str, outcome: Outcome, *, cumulative: bool
    ) -> bool:
        """The outcomes that leave the delivery in flight."""
        if message_id not in consumer.in_flight:
            return False
        ids = [message_id]
        if cumulative:
            ids = []
            for key in consumer.in_flight:
                ids.append(key)
                if key == message_id:
                    break
        for key in ids:
            if outcome is Outcome.DELIVERED:
                consumer.delivered.add(key)
            else:
                consumer.in_flight[key].redeliveries += 1
        if outcome is Outcome.DELIVERED and consumer.queue is not None:
            consumer.queue.wake()
        return True

    def ack(
        self, consumer: Consumer, message_id: str, *, cumulative: bool, transaction: str | None
    ) -> bool:
        """Acknowledge one delivery (or all up to it); False if it was not in flight."""
        return self.settle(
            consumer, message_id, Outcome.ACCEPTED, cumulative=cumulative, transaction=transaction
        )

    def nack(
        self, consumer: Consumer, message_id: str, *, cumulative: bool, transaction: str | None
    ) -> bool:
        """Reject one delivery (or all up to it) as ActiveMQ's STOMP NACK does: a
        redelivery is counted, and past the maximum it goes to the dead-letter queue."""
        return self.settle(
            consumer, message_id, Outcome.MODIFIED, cumulative=cumulative, transaction=transaction
        )

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
        for message, retain in tx.sends:
            held = broker.hold_scheduled(message)
            if held is not None:
                ops.extend(held)
                continue
            try:
                send_ops, targets = broker._route(message)
            except BrokerError:
                # The destination went away since SEND (a temp queue closed): like ActiveMQ,
                # that message is dropped and the rest of the transaction commits.
                continue
            ops.extend(send_ops)
            if retain and message.destination.is_topic:
                ops.append(broker._retain(message))
            deliveries.extend(targets)
        future = broker._write(ops) if ops else None
        for queue, entry in deliveries:
            queue.enqueue(entry)
            queue.wake()
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
        """Abort open transactions, redeliver unacked messages, delete temp destinations."""
        if self.closed:
            return
        self.closed = True
        for transaction in list(self.transactions):
            self.abort(transaction)
        for session in list(self.sessions.values()):
            session.close()
        for consumer_id, consumer in list(self.consumers.items()):
            del self.consumers[consumer_id]
            self._close_consumer(consumer_id, consumer)
        for name in self.temp_queues:
            queue = self.broker.queues.pop(name, None)
            if queue is not None:
                queue.drain()
                self.broker.events.emit(
                    DestinationRemoved(Destination(DestinationKind.TEMP_QUEUE, name))
                )
        for name in self.temp_topics:
            self.broker.temp_topics.discard(name)
            self.broker.events.emit(
                DestinationRemoved(Destination(DestinationKind.TEMP_TOPIC, name))
            )
        self.broker._disconnected(self)


_DEFAULT_OPTIONS = SubscribeOptions()


def _selector(selector: str | None) -> MessageFilter | None:
    """The compiled form of a subscription's selector; None for none (or only blanks)."""
    if selector is None or not selector.strip():
        return None
    # Imported with the first selector: a broker without any keeps none of it.
    from sealmq.core.selector import SelectorError, compile_selector

    try:
        return compile_selector(selector)
    except SelectorError as exc:
        raise SubscriptionError(str(exc)) from None


def _both(first: MessageFilter | None, second: MessageFilter | None) -> MessageFilter | None:
    if first is None or second is None:
        return first or second
    return lambda message: first(message) and second(message)
