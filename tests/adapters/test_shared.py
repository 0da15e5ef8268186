"""The fan-out encoding cache: a round of messages stays while its subscribers come."""

from __future__ import annotations

from sealmq.adapters.shared import KEEP_BYTES, KEEP_MESSAGES, SHARE_BELOW, SharedEncoding
from sealmq.core.model import Destination, Message

T = Destination.topic("t")


def message(n: int, size: int = 10) -> Message:
    return Message(f"m{n}", T, b"x" * size)


def test_the_last_messages_are_kept_by_identity_and_key() -> None:
    cache = SharedEncoding()
    messages = [message(i) for i in range(KEEP_MESSAGES)]
    for m in messages:
        cache.keep(m, "v1", (m.body,))
    assert all(cache.get(m, "v1") == (m.body,) for m in messages)
    assert cache.get(messages[0], "v2") is None
    assert cache.get(message(0), "v1") is None  # an equal message is not the same one
    cache.keep(message(KEEP_MESSAGES), "v1", (b"",))
    assert cache.get(messages[0], "v1") is None  # the oldest went
    assert cache.get(messages[1], "v1") is not None


def test_large_bodies_are_not_kept_and_kept_bytes_are_bounded() -> None:
    cache = SharedEncoding()
    big = message(0, SHARE_BELOW)
    cache.keep(big, "k", (b"",))
    assert cache.get(big, "k") is None
    size = SHARE_BELOW - 1
    kept = [message(i, size) for i in range(KEEP_BYTES // size + 2)]
    for m in kept:
        cache.keep(m, "k", (b"",))
    assert cache.get(kept[0], "k") is None
    assert cache.get(kept[-1], "k") is not None
