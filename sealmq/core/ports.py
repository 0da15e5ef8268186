"""What the core needs from a store: an atomic, durable log of broker operations.

The core speaks only these operations. A store (``sealmq.store``) turns
each batch into one sealed journal record, so a batch is applied whole or not
at all after a crash; that is what makes a transaction's commit atomic.

Ownership: a stored message is referenced by one or more *owners* — a queue
(``queue_key(name)``) or a durable subscription (``durable_key(client, name)``).
It stays live until every owner has removed its reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sealmq.core.model import Destination, DestinationInfo, DurableSubscriptionInfo, Message

__all__ = [
    "AddDestination",
    "AddMessage",
    "AddScheduled",
    "AddSubscription",
    "ForgetPrepared",
    "MessageStore",
    "MessageUnavailableError",
    "Op",
    "PrepareTransaction",
    "RecoveredState",
    "RemoveDestination",
    "RemoveMessage",
    "RemoveScheduled",
    "RemoveSubscription",
    "ScheduledJob",
    "SetDeliveryCount",
    "SetRetained",
    "SetSessionState",
    "StoredMessage",
    "StoredRef",
]


class MessageUnavailableError(Exception):
    """``read_messages`` cannot give a message back: no owner holds it, or its record is
    damaged (the other messages are still readable). Other errors mean the store cannot
    be read now (the key service refused): try again later."""


@dataclass(frozen=True, slots=True)
class AddMessage:
    """Store ``message`` once, referenced by each owner in ``owners``."""

    message: Message
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoveMessage:
    """``owner`` drops its reference to the message (acked, expired, or moved to a DLQ)."""

    message_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class AddSubscription:
    info: DurableSubscriptionInfo


@dataclass(frozen=True, slots=True)
class RemoveSubscription:
    """Forget a durable subscription; the store also drops its message references."""

    client_id: str
    name: str


@dataclass(frozen=True, slots=True)
class SetRetained:
    """Make ``message`` the retained message of topic ``topic`` (None clears it).

    The store keeps one retained message per topic, replacing the previous one.
    """

    topic: str
    message: Message | None


@dataclass(frozen=True, slots=True)
class SetSessionState:
    """Replace the opaque protocol session state stored under ``key`` (None deletes it).

    Adapters keep here what a protocol session must remember across a broker
    restart (MQTT: QoS 2 packet ids awaiting PUBREL, session expiry). The core
    never looks inside; keys are ``"<adapter>:<client id>"`` (``"mqtt:<client id>"``).
    The core keeps its own under ``"owner:<client id>"``: the user name owning that
    client id's session.
    """

    key: str
    state: bytes | None


@dataclass(frozen=True, slots=True)
class SetDeliveryCount:
    """``owner`` has delivered the message ``count`` times without its being settled.

    ``count`` is what ``Entry.redeliveries`` holds: the next delivery is flagged
    redelivered when it is above 0, and carries JMSXDeliveryCount ``count + 1``. The
    latest one per owner wins; it is forgotten with the owner's reference and when
    the message is added again (an ``AddMessage`` of the same id), and one for a
    message the owner does not hold is ignored. Written when a delivery ends without
    an ack (redelivery, nack), never on a first delivery.
    """

    message_id: str
    owner: str
    count: int


@dataclass(frozen=True, slots=True)
class AddDestination:
    """Keep ``info`` across restarts (replacing any earlier record of its destination)."""

    info: DestinationInfo


@dataclass(frozen=True, slots=True)
class RemoveDestination:
    """Forget the destination; what owners of it hold is removed by their own ops."""

    destination: Destination


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A message the scheduler holds until it is due, under the scheduler's job id."""

    job_id: str
    message: Message
    #: When and how often (delay, period, repeat, cron) as the scheduler encodes it;
    #: opaque to the store.
    schedule: bytes = b""


@dataclass(frozen=True, slots=True)
class AddScheduled:
    """Keep ``job`` until it is removed (replacing any earlier job of its id).

    The scheduler sends a due message by writing ``RemoveScheduled`` and the message's
    ``AddMessage`` in one record (and a repeating job's next ``AddScheduled``).
    """

    job: ScheduledJob


@dataclass(frozen=True, slots=True)
class RemoveScheduled:
    job_id: str


@dataclass(frozen=True, slots=True)
class PrepareTransaction:
    """Keep a prepared (XA) transaction's ``ops`` until it is resolved.

    The ops (``AddMessage``, ``RemoveMessage`` and the like, not nested transactions)
    take no effect here: a commit writes ``ForgetPrepared`` and the ops themselves in
    one record, a rollback ``ForgetPrepared`` alone. Recovery returns what is still
    prepared, for the transaction manager to resolve.
    """

    xid: bytes
    ops: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class ForgetPrepared:
    """The prepared transaction ``xid`` is resolved (committed or rolled back)."""

    xid: bytes


Op = (
    AddMessage
    | RemoveMessage
    | AddSubscription
    | RemoveSubscription
    | SetRetained
    | SetSessionState
    | SetDeliveryCount
    | AddDestination
    | RemoveDestination
    | AddScheduled
    | RemoveScheduled
    | PrepareTransaction
    | ForgetPrepared
)


@dataclass(slots=True)
class StoredMessage:
    """A recovered message and the owners still holding it, in original send order."""

    message: Message
    owners: list[str]
    #: The latest ``SetDeliveryCount`` of each owner that has one.
    delivery_counts: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class StoredRef:
    """A recovered message known by its id only (``recover(bodies=False)``): read it back
    with ``read_messages`` when it is wanted."""

    message_id: str
    #: Shared by every ref of the same owners (the store interns them): never modify.
    owners: tuple[str, ...]
    #: The latest ``SetDeliveryCount`` of each owner that has one (None: none has).
    delivery_counts: dict[str, int] | None = None
    #: The body's size in bytes.
    size: int = 0


@dataclass(slots=True)
class RecoveredState:
    messages: list[StoredMessage] = field(default_factory=list)
    subscriptions: list[DurableSubscriptionInfo] = field(default_factory=list)
    #: The retained message of each topic that has one.
    retained: list[Message] = field(default_factory=list)
    #: Session state by key, as last set by ``SetSessionState``.
    sessions: dict[str, bytes] = field(default_factory=dict)
    #: Every destination added and not removed, sorted by kind and name.
    destinations: list[DestinationInfo] = field(default_factory=list)
    #: Every scheduled job added and not removed, sorted by job id.
    scheduled: list[ScheduledJob] = field(default_factory=list)
    #: The ops of every transaction prepared and not forgotten, by xid.
    prepared: dict[bytes, tuple[Op, ...]] = field(default_factory=dict)
    #: With ``recover(bodies=False)``: every live message by id instead of
    #: :attr:`messages`, in send order. May be an iterator: iterate it once.
    refs: Iterable[StoredRef] = ()


class MessageStore(Protocol):
    """The store seen from the core. Implemented by the file store and the memory store."""

    def recover(self, *, bodies: bool = True) -> RecoveredState:
        """Read everything durable; called once, before the first ``write``.

        ``bodies=False``: live messages come as :attr:`RecoveredState.refs` (id, owners,
        counts, size), none held in memory; the broker reads them back when it pages."""
        ...

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        """Append ``ops`` as one atomic record.

        Returns a future that completes once the record is durable (fsynced),
        or fails with a store error. Callers that need no confirmation may drop
        the future; ordering is kept. With ``sync=False`` the future completes
        once the record is written, and the record becomes durable with the next
        synced write: for acks nobody waits on, where a crash may bring a message
        back but never lose one. Must be called from the event loop thread.
        """
        ...

    def read_messages(self, message_ids: Sequence[str]) -> list[Message]:
        """Read live, durable messages back by id, in the order asked (paging).

        Raises :class:`MessageUnavailableError` for an id no owner holds or a record
        that is damaged, another store error when it cannot read now. May block on file
        I/O: the core calls it off the event loop (``core/paging.py``).
        """
        ...

    async def close(self) -> None:
        """Flush pending writes and release files and locks."""
        ...
