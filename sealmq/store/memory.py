"""The memory store: the same ``MessageStore`` contract, nothing persisted.

For brokers configured without persistence, and as the reference model the
file store is checked against: :meth:`MemoryStore.snapshot` is exactly what
the file store's ``recover()`` must return after the same writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sealmq.core.model import DurableSubscriptionInfo, Message, durable_key
from sealmq.core.ports import (
    AddMessage,
    AddSubscription,
    Op,
    RecoveredState,
    RemoveMessage,
    RemoveSubscription,
    SetRetained,
    SetSessionState,
    StoredMessage,
)
from sealmq.store.errors import StoreClosedError

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the live state in memory; ``write`` returns an already-completed future."""

    def __init__(self) -> None:
        self._messages: dict[str, tuple[Message, list[str]]] = {}
        self._subscriptions: dict[str, DurableSubscriptionInfo] = {}
        self._retained: dict[str, Message] = {}
        self._sessions: dict[str, bytes] = {}
        self._closed = False

    def recover(self) -> RecoveredState:
        """Nothing survives a restart: a fresh store recovers nothing."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        return self.snapshot()

    def snapshot(self) -> RecoveredState:
        """What a durable store would recover now (retained messages sorted by topic)."""
        retained = self._retained
        return RecoveredState(
            [StoredMessage(m, list(owners)) for m, owners in self._messages.values()],
            list(self._subscriptions.values()),
            [retained[topic] for topic in sorted(retained)],
            dict(self._sessions),
        )

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_exception(StoreClosedError("the store is closed"))
            return fut
        messages = self._messages
        for op in ops:
            if type(op) is AddMessage:
                messages.pop(op.message.message_id, None)
                if op.owners:
                    messages[op.message.message_id] = (op.message, list(dict.fromkeys(op.owners)))
            elif type(op) is RemoveMessage:
                entry = messages.get(op.message_id)
                if entry is not None and op.owner in entry[1]:
                    entry[1].remove(op.owner)
                    if not entry[1]:
                        del messages[op.message_id]
            elif type(op) is AddSubscription:
                self._subscriptions[op.info.key] = op.info
            elif type(op) is RemoveSubscription:
                key = durable_key(op.client_id, op.name)
                self._subscriptions.pop(key, None)
                for mid, (_, owners) in list(messages.items()):
                    if key in owners:
                        owners.remove(key)
                        if not owners:
                            del messages[mid]
            elif type(op) is SetRetained:
                if op.message is None:
                    self._retained.pop(op.topic, None)
                else:
                    self._retained[op.topic] = op.message
            elif type(op) is SetSessionState:
                if op.state is None:
                    self._sessions.pop(op.key, None)
                else:
                    self._sessions[op.key] = bytes(op.state)
        fut.set_result(None)
        return fut

    async def close(self) -> None:
        self._closed = True
