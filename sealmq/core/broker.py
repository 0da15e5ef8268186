"""The protocol-neutral broker: destinations, subscriptions, acks, redelivery and transactions.

Adapters open a :class:`Connection` per client connection and call its
methods; they get messages back through the :class:`DeliverySink` of each
consumer, in the broker's dispatch tick (never on the sender's call stack).
Everything runs on the event loop thread; only the store's durability wait is
asynchronous, surfaced as futures the adapter awaits before confirming a
persistent send to its producer. Time comes from the :class:`Clock` port and
what happens is told on :attr:`Broker.events` (``docs/core.md``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sealmq.core.authorization import ADVISORY_PREFIX, AuthorizationMap
from sealmq.core.clock import AsyncioClock, Clock, Timer
from sealmq.core.connection import Connection, SubscribeOptions
from sealmq.core.errors import (
    DestinationError,
    LimitError,
    SessionOwnerError,
    SubscriptionError,
)
from sealmq.core.events import (
    Connected,
    DeadLettered,
    DestinationCreated,
    Disconnected,
    EventBus,
    Expired,
    SlowConsumer,
)
from sealmq.core.limits import BrokerLimits, address_host
from sealmq.core.model import (
    SCHEDULING_PROPERTIES,
    Destination,
    DestinationInfo,
    DestinationKind,
    DurableSubscriptionInfo,
    Message,
    composite_parts,
    durable_key,
    queue_key,
)
from sealmq.core.paging import Pager
from sealmq.core.policy import DestinationPolicy, PolicyMap
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    MessageStore,
    Op,
    RemoveMessage,
    RemoveSubscription,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
)
from sealmq.core.queues import Consumer, Entry, MessageFilter, MessageQueue, Outcome
from sealmq.core.security import Principal
from sealmq.core.subscriptions import TopicSubscription
from sealmq.core.virtual import ACTIVEMQ_VIRTUAL_TOPICS, VirtualTopics
from sealmq.core.wildcards import matches
from sealmq.core.writes import LAZY_BATCH_SECONDS, BatchedWrites

if TYPE_CHECKING:
    from sealmq.core.advisory import Advisories
    from sealmq.core.forwarding import Forwards
    from sealmq.core.scheduler import Scheduler

__all__ = [
    "LAZY_BATCH_SECONDS",
    "Broker",
    "Connection",
    "SubscribeOptions",
    "TopicSubscription",
]

log = logging.getLogger("sealmq.core")

#: How often queues without consumers are swept for expired messages (ActiveMQ: 30 s).
EXPIRY_SWEEP_SECONDS = 30.0
#: Session state key prefix under which the core keeps the user owning a client id's session.
OWNER_KEY_PREFIX = "owner:"
#: Entries one queue dispatches before the next woken queue has its turn, in a tick
#: dispatching several: a topic's subscriptions then get each message close together,
#: so adapters encode it once for all of them (``adapters/shared.py`` keeps more).
DISPATCH_ROUND = 32


class Broker:
    """Destinations and subscriptions of one broker, on one event loop."""

    def __init__(
        self,
        store: MessageStore,
        *,
        policy: DestinationPolicy | None = None,
        policies: PolicyMap | None = None,
        broker_id: str = "sealmq",
        clock: Clock | None = None,
        events: EventBus | None = None,
        virtual_topics: VirtualTopics | None = ACTIVEMQ_VIRTUAL_TOPICS,
        advisories: bool = True,
        forwards: Forwards | None = None,
        authorization: AuthorizationMap | None = None,
        limits: BrokerLimits | None = None,
    ) -> None:
        self.store = store
        #: Which topics also feed consumer queues (ActiveMQ's virtual topics); None: none.
        self.virtual_topics = virtual_topics
        #: Each virtual topic's consumer queues that exist, in order of creation.
        self._virtual: dict[str, list[MessageQueue]] = {}
        self.limits = limits if limits is not None else BrokerLimits()
        #: Client connections (those with a principal) in all, per user, per address.
        self._clients = 0
        self._per_user: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        #: Who may read, write and create which destination; None: every authenticated
        #: user may do anything (no ``[[authorization]]`` configured).
        self.authorization = authorization
        #: Topics used so far (their first use needs ``admin``), kept only while an
        #: authorization map is set; queues are known by :attr:`queues`.
        self.known_topics: set[str] = set()
        #: Each destination's policy: ``policies`` (its entries over its default), else
        #: ``policy`` for every destination.
        self.policies = policies if policies is not None else PolicyMap(policy)
        self.broker_id = broker_id
        self.clock: Clock = clock if clock is not None else AsyncioClock()
        #: Where the core tells what happens; the broker's owners subscribe to it.
        self.events = events if events is not None else EventBus()
        self.writes = BatchedWrites(store, self.clock)
        #: Messages held for later by their ``AMQ_SCHEDULED_*`` properties (made with
        #: the first such message or stored job: a broker without any keeps none of it).
        self._scheduler: Scheduler | None = None
        #: ActiveMQ.Advisory.* topics, fed from the events (ActiveMQ's advisorySupport).
        #: Made when a first subscription to an advisory topic appears: until somebody
        #: listens there is nothing to publish.
        self.advisories: Advisories | None = None
        self._advisories_enabled = advisories
        #: Configured composite destinations (compositeQueue, compositeTopic).
        self.forwards = forwards
        #: Reads what queues keep only in the store back as their windows drain.
        self.pager = Pager(store, self.clock, lambda: self.writes.last_synced)
        self.queues: dict[str, MessageQueue] = {}
        #: Live temporary topics by name (their connection's id, ':', the client's name).
        self.temp_topics: set[str] = set()
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
        self._sweeper: Timer | None = None
        #: Queues woken since the last dispatch tick, in order of waking.
        self._dirty: dict[MessageQueue, None] = {}
        self._tick_scheduled = False
        #: Messages discarded past a subscription's pending limit, since the start.
        self.discarded_messages = 0
        #: The subscription each discarding episode is about, for its log line.
        self._discarding: dict[MessageQueue, str] = {}

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from sealmq.core.scheduler import Scheduler

            self._scheduler = Scheduler(self)
        return self._scheduler

    def hold_scheduled(self, message: Message) -> list[Op] | None:
        """The store ops holding ``message`` for scheduled delivery, or None when it asks
        for none (one set test for the usual message)."""
        if message.properties.keys().isdisjoint(SCHEDULING_PROPERTIES):
            return None
        return self.scheduler.hold(message)

    def check_schedule(self, message: Message) -> None:
        """Refuse a message whose scheduling properties make no schedule."""
        if not message.properties.keys().isdisjoint(SCHEDULING_PROPERTIES):
            self.scheduler.check(message)

    def note_topic_subscription(self, pattern: str) -> None:
        """A subscription to ``pattern`` is being made: start advisories if it is the
        first to an advisory topic."""
        if (
            self._advisories_enabled
            and self.advisories is None
            and pattern.startswith(ADVISORY_PREFIX)
        ):
            from sealmq.core.advisory import Advisories

            self.advisories = Advisories(self)

    def now_ms(self) -> int:
        """The clock's wall time in milliseconds (message timestamps and expiry)."""
        return self.clock.now_ms()

    @property
    def on_store_failure(self) -> Callable[[BaseException], None] | None:
        """Called with the exception when the store fails to write: the broker must stop."""
        return self.writes.on_failure

    @on_store_failure.setter
    def on_store_failure(self, callback: Callable[[BaseException], None] | None) -> None:
        self.writes.on_failure = callback

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Rebuild queues (empty ones too), durable subscriptions and delivery counts from
        the store; start the expiry sweep.

        Messages are recovered without their bodies: every queue starts with its backlog
        in the store and pages in its first window (``core/paging.py``)."""
        state = self.store.recover(bodies=False)
        for dest in state.destinations:
            if dest.destination.kind is DestinationKind.QUEUE:
                self._queue(dest.destination.name, persist=False)
        for info in state.subscriptions:
            self._add_durable(info)
        orphans: list[Op] = []
        for stored in state.messages:
            message = stored.message
            counts = stored.delivery_counts
            for owner in stored.owners:
                queue = self._queue_for_owner(owner)
                if queue is None:
                    orphans.append(RemoveMessage(message.message_id, owner))
                    continue
                # The count persisted when it was last redelivered, else the one it was
                # stored with (a dead-lettered copy's).
                redeliveries = message.redelivery_count
                if counts:
                    redeliveries = counts.get(owner, redeliveries)
                queue.enqueue(Entry(message, queue, redeliveries))
        recovered = len(state.messages)
        owners_queue: dict[str, MessageQueue | None] = {}  # a million refs, a few owners
        for ref in state.refs:
            recovered += 1
            held = ref.delivery_counts
            for owner in ref.owners:
                if owner in owners_queue:
                    queue = owners_queue[owner]
                else:
                    queue = owners_queue[owner] = self._queue_for_owner(owner)
                if queue is None:
                    orphans.append(RemoveMessage(ref.message_id, owner))
                    continue
                queue.page_recovered(ref.message_id, ref.size, held.get(owner) if held else None)
        if orphans:
            self._write(orphans)
        if state.scheduled:
            self.scheduler.recover(state.scheduled)
        for queue in self._paging_queues():
            queue.wake_pager()  # the first window of a backlog bigger than the limit
        for message in state.retained:
            self.retained[message.destination.name] = message
        self.sessions.update(state.sessions)
        log.info(
            "recovered %d messages, %d durable subscriptions",
            recovered,
            len(state.subscriptions),
        )
        self._schedule_sweep()

    async def ready(self) -> None:
        """Wait until the queues have paged in their first windows after :meth:`start` (the
        app waits before it listens, so the first consumers find messages in memory)."""
        await self.pager.idle()

    async def close(self) -> None:
        for connection in list(self.connections.values()):
            connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._scheduler is not None:
            self._scheduler.close()
        await self.pager.close()
        if self.writes.pending:
            self.writes.flush()
        await self.store.close()

    def _paging_queues(self) -> list[MessageQueue]:
        queues = [q for q in self.queues.values() if q.paged]
        return queues + [s.queue for s in self.durable.values() if s.queue.paged]

    def _queue_for_owner(self, owner: str) -> MessageQueue | None:
        if owner.startswith("queue:"):
            return self._queue(owner[len("queue:") :])
        sub = self.durable.get(owner)
        return sub.queue if sub is not None else None

    def _schedule_sweep(self) -> None:
        self._sweeper = self.clock.call_later(EXPIRY_SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self.sweep_expired()
        self._schedule_sweep()

    def sweep_expired(self) -> None:
        now = self.now_ms()
        for queue in list(self.queues.values()):
            queue.remove_expired(now)
        for sub in self.topic_subscriptions:
            sub.queue.remove_expired(now)

    # ----------------------------------------------------------------- the dispatch tick

    def wake(self, queue: MessageQueue) -> None:
        """Dispatch ``queue`` in this loop tick's dispatch step (once, however often woken)."""
        self._dirty[queue] = None
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self.clock.call_soon(self._dispatch_tick)

    def _dispatch_tick(self) -> None:
        """Dispatch every woken queue. Queues woken meanwhile (a delivery acked at once)
        wait for the next tick, so the transports write what this one produced first."""
        self._tick_scheduled = False
        dirty, self._dirty = self._dirty, {}
        now = self.now_ms()
        if len(dirty) == 1:
            for queue in dirty:
                queue.dispatch(now)
            return
        # Several queues (a topic's subscriptions): in rounds, so each message reaches
        # its subscribers close together.
        active = list(dirty)
        while active:
            active = [queue for queue in active if queue.dispatch(now, DISPATCH_ROUND)]

    def dispatch_now(self) -> None:
        """Run the dispatch step now rather than at the end of the tick (tests, shutdown)."""
        while self._dirty:
            self._dispatch_tick()

    # ----------------------------------------------------------------- connections

    def connect(
        self,
        *,
        client_id: str | None = None,
        principal: Principal | None = None,
        takeover: bool = False,
        peer: str | None = None,
    ) -> Connection:
        """Open the core side of a client connection, acting as ``principal``.

        ``principal`` None is the broker itself (never checked against the authorization
        map); ``peer`` is the client's address, for the log lines about it.

        A ``client_id`` already connected is refused with :class:`SubscriptionError`
        (ActiveMQ's rule for JMS and STOMP), unless ``takeover``: then the older
        connection is told through its ``on_taken_over`` callback and closed (MQTT).

        A ``client_id`` whose session (or live connection) belongs to another user is
        refused with :class:`SessionOwnerError`, and that session is left as it is.
        """
        username = principal.username if principal is not None else None
        if client_id is not None:
            owner = self.session_owner(client_id)
            if owner is not None and owner != username:
                raise SessionOwnerError(f"client id {client_id!r} is in use by another user")
        if client_id is not None and client_id in self._client_ids:
            if not takeover:
                raise SubscriptionError(f"client id {client_id!r} is already connected")
            older = self._client_ids[client_id]
            older.close()
            if older.on_taken_over is not None:
                older.on_taken_over()
        host = address_host(peer)
        if principal is not None:
            self._check_connection_limits(principal.username, host)
        connection = Connection(
            self, f"{self._id_prefix}-c{next(self._ids)}", client_id, principal, peer
        )
        self.connections[connection.id] = connection
        if principal is not None:
            self._clients += 1
            _bump(self._per_user, principal.username, 1)
            if host is not None:
                _bump(self._per_address, host, 1)
        self.events.emit(Connected(connection.id, client_id, username))
        if client_id is not None:
            self._client_ids[client_id] = connection
            if (
                username is not None
                and OWNER_KEY_PREFIX + client_id not in self.sessions
                and self.durable_subscriptions(client_id)
            ):
                # A session kept from before owners were recorded: its next user takes it.
                self.claim_session(client_id, username)
        return connection

    def set_authorization(self, authorization: AuthorizationMap | None) -> None:
        """Replace the authorization map; every connection's remembered answers go."""
        self.authorization = authorization
        self.known_topics.clear()
        for connection in self.connections.values():
            connection.forget_authorizations()

    def _check_connection_limits(self, username: str, host: str | None) -> None:
        limits = self.limits
        if limits.max_connections and self._clients >= limits.max_connections:
            refusal = f"the broker has its maximum of {limits.max_connections} connections"
        elif (
            limits.max_connections_per_user
            and self._per_user.get(username, 0) >= limits.max_connections_per_user
        ):
            refusal = (
                f"user {username} has its maximum of {limits.max_connections_per_user} connections"
            )
        elif (
            host is not None
            and limits.max_connections_per_address
            and self._per_address.get(host, 0) >= limits.max_connections_per_address
        ):
            refusal = (
                f"address {host} has its maximum of {limits.max_connections_per_address} "
                "connections"
            )
        else:
            return
        log.warning("connection refused: %s", refusal)
        raise LimitError(f"Connection refused: {refusal}")

    def check_new_destination(self) -> None:
        """Raise :class:`LimitError` if a client may not create one more destination."""
        limit = self.limits.max_destinations
        if limit and len(self.queues) + len(self.temp_topics) + len(self.known_topics) >= limit:
            raise LimitError(f"the broker has its maximum of {limit} destinations")

    def _disconnected(self, connection: Connection) -> None:
        if connection.principal is not None and connection.id in self.connections:
            self._clients -= 1
            _bump(self._per_user, connection.principal.username, -1)
            host = address_host(connection.peer)
            if host is not None:
                _bump(self._per_address, host, -1)
        self.connections.pop(connection.id, None)
        if connection.client_id is not None and self._client_ids.get(connection.client_id) is (
            connection
        ):
            del self._client_ids[connection.client_id]
        self.events.emit(Disconnected(connection.id, connection.client_id))

    def new_message_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _stamp(self, message: Message, user: str | None) -> None:
        """What the broker, not the producer, says of a message it is sent: its id, the
        time (unless the producer gave one) and the authenticated user who sent it."""
        message.message_id = f"{self._id_prefix}-{next(self._ids)}"
        if not message.timestamp:
            message.timestamp = self.now_ms()
        message.user_id = user

    # ----------------------------------------------------------------- destinations

    def _queue(self, name: str, *, persist: bool = True) -> MessageQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = MessageQueue(name, queue_key(name), self)
            queue.set_memory_limit(self.policies.for_queue(name).memory_limit)
            self.queues[name] = queue
            if self.virtual_topics is not None:
                topic = self.virtual_topics.topic_of(name)
                if topic is not None:
                    self._virtual.setdefault(topic, []).append(queue)
            self.events.emit(DestinationCreated(Destination.queue(name)))
            if persist:
                # Kept so that the queue outlives a restart while empty. Unsynced: a crash
                # may forget an empty queue, never a message (a persistent send syncs).
                info = DestinationInfo(Destination.queue(name))
                self._write([AddDestination(info)], sync=False)
        return queue

    def _temp_queue(self, name: str) -> MessageQueue:
        queue = self.queues.get(name)
        if queue is None:
            raise DestinationError(f"temporary queue {name} does not exist")
        return queue

    def temp_topic(self, name: str) -> str:
        """``name`` if it is a live temporary topic; DestinationError once deleted."""
        if name not in self.temp_topics:
            raise DestinationError(f"temporary topic {name} does not exist")
        return name

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
        if destination.kind is DestinationKind.TEMP_TOPIC:
            self.temp_topic(destination.name)
        targets = []
        owners = []
        for sub in self._matching(destination.name):
            if sub.no_local and sub.connection_id == message.origin:
                continue
            if sub.selector is not None and not sub.selector(message):
                continue
            targets.append((sub.queue, Entry(message, sub.queue)))
            if message.persistent and sub.queue.owner is not None:
                owners.append(sub.queue.owner)
        for queue in self._virtual.get(destination.name, ()):
            targets.append((queue, Entry(message, queue)))
            if message.persistent and queue.owner is not None:
                owners.append(queue.owner)
        return ([AddMessage(message, tuple(owners))] if owners else []), targets

    def send(
        self, message: Message, *, retain: bool = False, user: str | None = None
    ) -> asyncio.Future[None] | None:
        """Stamp and route ``message``; returns a future for its durability, or None if
        nothing is stored.

        ``retain``: also make it its topic's retained message (MQTT). ``user``: the
        authenticated user sending it (``Connection.send`` passes its own).
        """
        self._stamp(message, user)
        parts = self.composite_parts(message)
        if parts is not None:
            # A composite destination: each part is sent as a message of its own, all in
            # this tick's one store record; none is sent if one cannot be.
            for part in parts:
                if part.destination.is_wildcard:
                    raise DestinationError(
                        f"cannot send to the wildcard destination {part.destination.name}"
                    )
                self.check_schedule(part)
            future = None
            for part in parts:
                future = self._send_stamped(part, retain) or future
            return future
        return self._send_stamped(message, retain)

    def composite_parts(self, message: Message) -> list[Message] | None:
        """Copies of ``message``, one per destination it reaches: each of its composite
        destination (ActiveMQ's ``a,b,topic://c``) and where configured composites
        forward it, each with an id of its own (the first keeps the message's); None if
        it goes only where it is addressed."""
        forwards = self.forwards
        if forwards is None and "," not in message.destination.name:
            return None  # the usual case, at the cost of one test
        try:
            named = composite_parts(message.destination)
        except ValueError as exc:
            raise DestinationError(str(exc)) from None
        destinations: list[Destination] = []
        changed = named is not None
        for destination in named or (message.destination,):
            targets = forwards.targets(message, destination) if forwards is not None else None
            if targets is None:
                destinations.append(destination)
            else:
                destinations.extend(targets)
                changed = True
        if not changed:
            return None
        copies = []
        for n, destination in enumerate(destinations):
            copies.append(
                dataclasses.replace(
                    message,
                    destination=destination,
                    message_id=message.message_id if n == 0 else self.new_message_id(),
                    properties=dict(message.properties),
                )
            )
        return copies

    def _send_stamped(self, message: Message, retain: bool) -> asyncio.Future[None] | None:
        held = self.hold_scheduled(message)
        if held is not None:
            # Stored whether persistent or not (the job store is); only a persistent
            # message's producer waits for it.
            written = self._write(held, sync=message.persistent)
            return written if message.persistent else None
        ops, targets = self._route(message)
        if retain and message.destination.is_topic:
            ops.append(self._retain(message))
        future = self._write(ops) if ops else None
        for queue, entry in targets:
            queue.enqueue(entry)
            queue.wake()
        return future

    def has_subscribers(self, message: Message) -> bool:
        """Whether a message just sent reached any subscriber (MQTT 5's reason 0x10 when not).

        A queue always holds it; a topic message needs a matching subscription, durable
        or not, other than a no-local one of its own connection. Being retained does not
        count.
        """
        try:
            destinations = composite_parts(message.destination) or [message.destination]
        except ValueError:
            return False
        for destination in destinations:
            if destination.is_queue or destination.name in self._virtual:
                return True
            if any(
                not (sub.no_local and sub.connection_id == message.origin)
                and (sub.selector is None or sub.selector(message))
                for sub in self._matching(destination.name)
            ):
                return True
        return False

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

    def session_owner(self, client_id: str) -> str | None:
        """The user ``client_id``'s session belongs to: the one recorded with the stored
        session, else the user of the connection holding the client id now, else None."""
        stored = self.sessions.get(OWNER_KEY_PREFIX + client_id)
        if stored is not None:
            return stored.decode("utf-8", "surrogatepass")
        live = self._client_ids.get(client_id)
        return live.username if live is not None else None

    def claim_session(self, client_id: str, username: str | None) -> None:
        """Record ``username`` as the owner of ``client_id``'s persistent session.

        Adapters call it when a session starts keeping state across connections (the core
        does for durable subscriptions); the owner is stored, sealed, with the session.
        """
        if username is None:
            return
        key = OWNER_KEY_PREFIX + client_id
        owner = username.encode("utf-8", "surrogatepass")
        if self.sessions.get(key) != owner:
            self.set_session_state(key, owner)

    def release_session(self, client_id: str) -> None:
        """Forget the owner of ``client_id``'s session once it keeps nothing: no durable
        subscription and no adapter session state (``<adapter>:<client id>``); call after
        discarding the adapter's own state."""
        key = OWNER_KEY_PREFIX + client_id
        if key not in self.sessions or self.durable_subscriptions(client_id):
            return
        if any(other != key and other.partition(":")[2] == client_id for other in self.sessions):
            return  # another protocol's session of the same client id still holds state
        self.set_session_state(key, None)

    def durable_subscriptions(self, client_id: str) -> list[DurableSubscriptionInfo]:
        """Every durable subscription of ``client_id`` (an MQTT persistent session's)."""
        return [
            sub.info
            for sub in self.durable.values()
            if sub.info is not None and sub.info.client_id == client_id
        ]

    def is_connected(self, client_id: str) -> bool:
        return client_id in self._client_ids

    # ----------------------------------------------------------------- store writes

    def _write(self, ops: list[Op], *, sync: bool = True) -> asyncio.Future[None]:
        """Queue ``ops`` for the store; everything queued in one loop tick is one record."""
        return self.writes.write(ops, sync=sync)

    def pending_write(self) -> asyncio.Future[None] | None:
        """Durability of everything queued for the store so far in this loop tick, if any.

        Adapters wait on it before confirming a request whose effect (an ack, a DLQ move)
        the core stored without handing back a future.
        """
        return self.writes.pending_write()

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
        message = entry.message
        if self.events.wants(Expired):
            self.events.emit(Expired(message.message_id, message.destination))
        if self.policies.for_destination(message.destination).process_expired:
            self._dead_letter(entry, "Message expired")
        else:
            ops = self._settle([entry])
            if ops:
                self._write(ops)

    def page_in(self, queue: MessageQueue) -> None:
        """``queue`` wants its next messages back from the store (``core/paging.py``)."""
        self.pager.page_in(queue)

    def discarding(self, queue: MessageQueue, discarded: int) -> None:
        """One line when a slow consumer's subscription starts discarding, one WARNING
        with the count when the episode ends (it caught up, or left)."""
        consumer = queue.consumers[0] if queue.consumers else None
        self.events.emit(
            SlowConsumer(
                consumer.connection_id if consumer is not None else None,
                consumer.id if consumer is not None else None,
                queue.name,
                discarded,
            )
        )
        if not discarded:
            label = (
                f"subscription {consumer.id!r} of connection {consumer.connection_id}"
                if consumer is not None
                else "a subscription"
            )
            label += f" on {'durable subscription' if queue.durable else 'topic'} {queue.name}"
            self._discarding[queue] = label
            log.info(
                "slow consumer: %s holds %d messages; discarding the oldest",
                label,
                queue.pending_limit,
            )
            return
        label = self._discarding.pop(queue, f"a subscription on topic {queue.name}")
        self.discarded_messages += discarded
        log.warning(
            "slow consumer: %s discarded %d messages past the pending limit of %d",
            label,
            discarded,
            queue.pending_limit,
        )

    def acknowledge(self, entries: list[Entry]) -> None:
        ops = self._settle(entries)
        if ops:
            self._write(ops, sync=False)

    def settle(
        self,
        entries: list[Entry],
        outcome: Outcome,
        *,
        exclude: Consumer | None = None,
    ) -> None:
        """Apply a final ``outcome`` to entries taken out of flight (``Outcome`` says
        what each means); ``exclude``: a consumer a modified entry must not go to again."""
        if not entries:
            return
        if outcome is Outcome.ACCEPTED:
            self.acknowledge(entries)
        elif outcome is Outcome.MODIFIED:
            self.redeliver(entries, exclude=exclude)
        elif outcome is Outcome.RELEASED:
            self._release(entries, exclude)
        elif outcome is Outcome.REJECTED:
            for entry in entries:
                self._dead_letter(entry, "Rejected by the consumer")
        elif outcome is Outcome.EXPIRED:
            for entry in entries:
                self.entry_expired(entry)
        else:
            raise ValueError(f"{outcome} does not settle a delivery")

    def _release(self, entries: list[Entry], exclude: Consumer | None) -> None:
        """Back to their queues at once, no redelivery counted (AMQP released)."""
        by_queue: dict[MessageQueue, list[Entry]] = {}
        for entry in entries:
            if exclude is not None:
                _exclude(entry, exclude)
            by_queue.setdefault(entry.queue, []).append(entry)
        for queue, batch in by_queue.items():
            self._requeue(queue, batch)

    def redeliver(self, entries: list[Entry], *, exclude: Consumer | None = None) -> None:
        """Offer ``entries`` again, or dead-letter those past the redelivery limit."""
        retry: dict[tuple[MessageQueue, int], list[Entry]] = {}
        counts: list[Op] = []
        now = self.now_ms()
        for entry in entries:
            entry.redeliveries += 1
            if exclude is not None:
                _exclude(entry, exclude)
            policy = self.policies.for_destination(entry.message.destination)
            limit = policy.maximum_redeliveries
            if 0 <= limit < entry.redeliveries:
                self._dead_letter(
                    entry,
                    f"Delivery[{entry.redeliveries}] exceeds redelivery policy limit",
                )
            elif self._queue_alive(entry.queue):
                delay = policy.redelivery_delay_for(entry.redeliveries)
                owner = entry.queue.owner
                if owner is not None and entry.message.persistent:
                    if delay > 0:
                        # Stored, so that the wait outlives a restart: the message leaves
                        # its queue for the scheduler until it is due.
                        counts += self.scheduler.hold_redelivery(
                            entry.message, owner, entry.redeliveries, now + delay
                        )
                        continue
                    counts.append(
                        SetDeliveryCount(entry.message.message_id, owner, entry.redeliveries)
                    )
                retry.setdefault((entry.queue, delay), []).append(entry)
        if counts:
            # Unsynced: a crash before the next synced write may undercount, never lose.
            self._write(counts, sync=False)
        for (queue, delay), batch in retry.items():
            if delay > 0:
                self.clock.call_later(delay / 1000, functools.partial(self._requeue, queue, batch))
            else:
                self._requeue(queue, batch)

    def _requeue(self, queue: MessageQueue, entries: list[Entry]) -> None:
        if not self._queue_alive(queue):
            return
        queue.requeue_front(entries)

    def _queue_alive(self, queue: MessageQueue) -> bool:
        return not (queue.owner is None and not queue.consumers and queue.name not in self.queues)

    def _dead_letter(self, entry: Entry, cause: str) -> None:
        """Move ``entry`` to the DLQ (persistent messages) or drop it (ActiveMQ's default)."""
        message = entry.message
        ops: list[Op] = self._settle([entry])
        policy = self.policies.for_destination(message.destination)
        dlq = policy.dead_letter_queue_for(message.destination)
        # A dead letter of a dead-letter queue is dropped, as ActiveMQ does.
        from_dlq = message.destination.is_queue and policy.is_dead_letter_queue(
            message.destination.name
        )
        moved = (message.persistent or policy.process_non_persistent) and not from_dlq
        if self.events.wants(DeadLettered):
            self.events.emit(
                DeadLettered(message.message_id, message.destination, cause, dlq if moved else None)
            )
        if moved:
            queue = self._queue(dlq)
            copy = dataclasses.replace(
                message,
                message_id=self.new_message_id(),
                destination=Destination.queue(dlq),
                original_destination=message.destination,
                # Kept until someone deals with it, whatever the original was.
                persistent=True,
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
            queue.wake()
        if ops:
            self._write(ops)

    # ----------------------------------------------------------------- durable subscriptions

    def _add_durable(self, info: DurableSubscriptionInfo) -> TopicSubscription:
        self.note_topic_subscription(info.destination.name)
        queue = MessageQueue(info.key, info.key, self, exclusive=True, durable=True)
        queue.set_memory_limit(self.policies.for_destination(info.destination).memory_limit)
        sub = TopicSubscription(
            info.destination.name,
            queue,
            info=info,
            no_local=info.no_local,
            selector=self._durable_selector(info),
        )
        self.durable[info.key] = sub
        self.topic_subscriptions.append(sub)
        self._subscriptions_changed()
        return sub

    def _durable_selector(self, info: DurableSubscriptionInfo) -> MessageFilter | None:
        """A durable subscription's selector, compiled; checked when it was created, so
        one that no longer compiles (a stored subscription read by a stricter broker)
        selects nothing rather than everything, and says so."""
        if info.selector is None or not info.selector.strip():
            return None
        # Imported with the first selector: a broker without any keeps none of it.
        from sealmq.core.selector import SelectorError, compile_selector

        try:
            return compile_selector(info.selector)
        except SelectorError as exc:
            log.error(
                "durable subscription %r of client %r: %s; it receives nothing until "
                "it is subscribed again with a valid selector",
                info.name,
                info.client_id,
                exc,
            )
            return _select_nothing

    def _drop_subscription(self, sub: TopicSubscription) -> None:
        self.topic_subscriptions.remove(sub)
        self._subscriptions_changed()
        sub.queue.end_discard_episode()
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


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    """Add ``by`` to ``counts[key]``, dropping keys that reach 0 (the table stays small)."""
    count = counts.get(key, 0) + by
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)


def _exclude(entry: Entry, consumer: Consumer) -> None:
    if entry.excluded is None:
        entry.excluded = set()
    entry.excluded.add(consumer)


def _select_nothing(message: Message) -> bool:
    return False
