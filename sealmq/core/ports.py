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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sealmq.core.model import DurableSubscriptionInfo, Message

__all__ = [
    "AddMessage",
    "AddSubscription",
    "MessageStore",
    "Op",
    "RecoveredState",
    "RemoveMessage",
    "RemoveSubscription",
    "SetRetained",
    "SetSessionState",
    "StoredMessage",
]


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
    never looks inside; keys are namespaced by the adapter (``"mqtt:<client id>"``).
    """

    key: str
    state: bytes | None


Op = (
    AddMessage
    | RemoveMessage
    | AddSubscription
    | RemoveSubscription
    | SetRetained
    | SetSessionState
)


@dataclass(slots=True)
class StoredMessage:
    """A recovered message and the owners still holding it, in original send order."""

    message: Message
    owners: list[str]


@dataclass(slots=True)
class RecoveredState:
    messages: list[StoredMessage] = field(default_factory=list)
    subscriptions: list[DurableSubscriptionInfo] = field(default_factory=list)
    #: The retained message of each topic that has one.
    retained: list[Message] = field(default_factory=list)
    #: Session state by key, as last set by ``SetSessionState``.
    sessions: dict[str, bytes] = field(default_factory=dict)


class MessageStore(Protocol):
    """The store seen from the core. Implemented by the file store and the memory store."""

    def recover(self) -> RecoveredState:
        """Read everything durable; called once, before the first ``write``."""
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

    async def close(self) -> None:
        """Flush pending writes and release files and locks."""
        ...
