"""The memory store: the same ``MessageStore`` contract, nothing persisted.

For brokers configured without persistence, and as the reference model the
file store is checked against: :meth:`MemoryStore.snapshot` is exactly what
the file store's ``recover()`` must return after the same writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sealmq.core.model import DestinationInfo, DurableSubscriptionInfo, Message, durable_key
from sealmq.core.ports import (
    AddDestination,
    AddMessage,
    AddScheduled,
    AddSubscription,
    ForgetPrepared,
    Op,
    PrepareTransaction,
    RecoveredState,
    RemoveDestination,
    RemoveMessage,
    RemoveScheduled,
    RemoveSubscription,
    ScheduledJob,
    SetDeliveryCount,
    SetRetained,
    SetSessionState,
    StoredMessage,
    StoredRef,
)
from sealmq.store.errors import MessageNotFoundError, StoreClosedError

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps the live state in memory; ``write`` returns an already-completed future."""

    def __init__(self) -> None:
        self._messages: dict[str, tuple[Message, list[str]]] = {}
        self._subscriptions: dict[str, DurableSubscriptionInfo] = {}
        self._retained: dict[str, Message] = {}
        self._sessions: dict[str, bytes] = {}
        #: Delivery counts by message id, then owner.
        self._counts: dict[str, dict[str, int]] = {}
        self._destinations: dict[tuple[int, str], DestinationInfo] = {}
        self._scheduled: dict[str, ScheduledJob] = {}
        self._prepared: dict[bytes, tuple[Op, ...]] = {}
        self._closed = False

    def recover(self, *, bodies: bool = True) -> RecoveredState:
        """Nothing survives a restart: a fresh store recovers nothing (a store written to
        recovers its :meth:`snapshot`; without ``bodies``, messages as refs)."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        state = self.snapshot()
        if not bodies:
            state.refs = [
                StoredRef(
                    s.message.message_id,
                    tuple(s.owners),
                    s.delivery_counts or None,
                    len(s.message.body),
                )
                for s in state.messages
            ]
            state.messages = []
        return state

    def snapshot(self) -> RecoveredState:
        """What a durable store would recover now (retained messages sorted by topic)."""
        retained, counts, destinations = self._retained, self._counts, self._destinations
        return RecoveredState(
            [
                StoredMessage(m, list(owners), dict(counts.get(m.message_id, {})))
                for m, owners in self._messages.values()
            ],
            list(self._subscriptions.values()),
            [retained[topic] for topic in sorted(retained)],
            dict(self._sessions),
            [destinations[key] for key in sorted(destinations)],
            [self._scheduled[job] for job in sorted(self._scheduled)],
            dict(self._prepared),
        )

    def write(self, ops: Sequence[Op], *, sync: bool = True) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_exception(StoreClosedError("the store is closed"))
            return fut
        messages, counts = self._messages, self._counts
        for op in ops:
            if type(op) is AddMessage:
                mid = op.message.message_id
                messages.pop(mid, None)
                counts.pop(mid, None)  # a message added again starts with no counts
                if op.owners:
                    messages[mid] = (op.message, list(dict.fromkeys(op.owners)))
            elif type(op) is RemoveMessage:
                entry = messages.get(op.message_id)
                if entry is not None and op.owner in entry[1]:
                    entry[1].remove(op.owner)
                    self._drop_count(op.message_id, op.owner)
                    if not entry[1]:
                        del messages[op.message_id]
            elif type(op) is SetDeliveryCount:
                entry = messages.get(op.message_id)
                if entry is not None and op.owner in entry[1]:
                    counts.setdefault(op.message_id, {})[op.owner] = op.count
            elif type(op) is AddDestination:
                d = op.info.destination
                self._destinations[(d.kind, d.name)] = op.info
            elif type(op) is RemoveDestination:
                d = op.destination
                self._destinations.pop((d.kind, d.name), None)
            elif type(op) is AddScheduled:
                self._scheduled[op.job.job_id] = op.job
            elif type(op) is RemoveScheduled:
                self._scheduled.pop(op.job_id, None)
            elif type(op) is PrepareTransaction:
                self._prepared[op.xid] = op.ops
            elif type(op) is ForgetPrepared:
                self._prepared.pop(op.xid, None)
            elif type(op) is AddSubscription:
                self._subscriptions[op.info.key] = op.info
            elif type(op) is RemoveSubscription:
                key = durable_key(op.client_id, op.name)
                self._subscriptions.pop(key, None)
                for mid, (_, owners) in list(messages.items()):
                    if key in owners:
                        owners.remove(key)
                        self._drop_count(mid, key)
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

    def read_messages(self, message_ids: Sequence[str]) -> list[Message]:
        """The live messages ``message_ids``, in that order (see ``FileStore.read_messages``)."""
        if self._closed:
            raise StoreClosedError("the store is closed")
        messages = self._messages
        out = []
        for mid in message_ids:
            entry = messages.get(mid)
            if entry is None:
                raise MessageNotFoundError(f"no live message with id {mid!r} in the store")
            out.append(entry[0])
        return out

    def _drop_count(self, message_id: str, owner: str) -> None:
        held = self._counts.get(message_id)
        if held is not None:
            held.pop(owner, None)
            if not held:
                del self._counts[message_id]

    async def close(self) -> None:
        self._closed = True
