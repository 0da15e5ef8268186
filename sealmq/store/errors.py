"""The store's errors: a short, named list (as nats-server's ``store.go`` keeps it).

Messages never carry record contents, only file names, offsets and reasons.
"""

from __future__ import annotations

from pathlib import Path

from sealmq.core.ports import MessageUnavailableError

__all__ = [
    "CorruptRecordError",
    "JournalIntegrityError",
    "KeyUnavailableError",
    "MessageNotFoundError",
    "StoreClosedError",
    "StoreError",
    "StoreLockedError",
]


class StoreError(Exception):
    """Base of every error the store raises."""


class CorruptRecordError(StoreError, MessageUnavailableError):
    """A segment header or record failed authentication or parsing; the broker must not start."""

    def __init__(self, reason: str, path: Path | None = None, offset: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}" + (f" at offset {offset}" if offset is not None else "") + ": "
        super().__init__(where + reason)
        self.reason = reason
        self.path = path
        self.offset = offset


class JournalIntegrityError(CorruptRecordError):
    """A segment is missing, out of place, replaced, or cut short of what was confirmed."""


class KeyUnavailableError(StoreError):
    """The key provider could not generate or unwrap a data key (grant revoked, key disabled…)."""


class StoreLockedError(StoreError):
    """Another store instance (another broker) holds the data folder's lock."""


class StoreClosedError(StoreError):
    """The store is closed (or was never opened); it accepts no more writes."""


class MessageNotFoundError(StoreError, MessageUnavailableError):
    """No owner holds a message of that id (all acknowledged it, or it was never stored)."""
