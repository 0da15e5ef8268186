"""Bytes encoded once per message and shared by every subscriber that gets the same.

Topic fan-out hands one message to each of its subscribers close together: the
core's dispatch tick serves woken queues in rounds of a few dozen entries
(``DISPATCH_ROUND`` in ``core/broker.py``), so remembering the encodings of the
last :data:`KEEP_MESSAGES` messages is enough to encode each once: an adapter
asks :meth:`SharedEncoding.get` with the message and what its bytes depend on
(protocol level, flags), and on a miss encodes and :meth:`keep`\\ s them. Only
small bodies are kept, and only that many messages, so the cache never holds
much alive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from sealmq.core.model import Message

__all__ = ["KEEP_BYTES", "KEEP_MESSAGES", "SHARE_BELOW", "SharedEncoding"]

#: Encodings are kept for bodies below this size. A larger body is queued apart from
#: its header anyway (no copy to save), and a cache must not keep it alive.
SHARE_BELOW = 64 * 1024
#: Messages whose encodings are kept: twice the core's dispatch round, so a round's
#: messages are all still there when the next subscription's round comes.
KEEP_MESSAGES = 64
#: And at most this many body bytes kept alive by the cache, whatever their number.
KEEP_BYTES = 1024 * 1024


class SharedEncoding:
    """The encodings of the last messages delivered, by what else they depend on."""

    __slots__ = ("_bytes", "_kept")

    def __init__(self) -> None:
        # Messages compare by identity (``eq=False``): the very object, not an equal one.
        self._kept: OrderedDict[Message, dict[Hashable, tuple[bytes, ...]]] = OrderedDict()
        self._bytes = 0

    def get(self, message: Message, key: Hashable) -> tuple[bytes, ...] | None:
        """The chunks kept for ``message`` under ``key``, or None."""
        encoded = self._kept.get(message)
        if encoded is None:
            return None
        return encoded.get(key)

    def keep(self, message: Message, key: Hashable, chunks: tuple[bytes, ...]) -> None:
        """Remember ``chunks`` for ``message``'s next subscribers; forgets the oldest
        messages past :data:`KEEP_MESSAGES` or :data:`KEEP_BYTES`."""
        if len(message.body) >= SHARE_BELOW:
            return
        kept = self._kept
        encoded = kept.get(message)
        if encoded is None:
            encoded = kept[message] = {}
            self._bytes += len(message.body)
            while len(kept) > KEEP_MESSAGES or self._bytes > KEEP_BYTES:
                oldest, _ = kept.popitem(last=False)
                self._bytes -= len(oldest.body)
        encoded[key] = chunks
