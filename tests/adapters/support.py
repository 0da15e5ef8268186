"""Adapters driven by bytes, no sockets: a :class:`FakeLink` stands for the network driver,
the core runs on the in-memory store, and a real (cheap) authenticator checks logins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sealmq.adapters.base import Session
from sealmq.core.broker import Broker
from sealmq.core.security import (
    Authenticator,
    PeerCertificate,
    UserRecord,
    password_hasher,
)
from sealmq.store.memory import MemoryStore

USER, PASSWORD = "app", "app-secret-12"


def authenticator() -> Authenticator:
    hasher = password_hasher(time_cost=1, memory_kib=64, parallelism=1)
    return Authenticator([UserRecord.create(USER, PASSWORD, ["admins"], hasher=hasher)])


def memory_broker() -> Broker:
    broker = Broker(MemoryStore())
    broker.start()
    return broker


class FakeLink:
    """The ``Link`` an adapter writes through: output is kept in :attr:`written`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.written = bytearray()
        self.closed = False
        self.reading_paused = False
        self.is_logged_in = False
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False

    @property
    def peer(self) -> str:
        return "127.0.0.1:1"

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        return None

    def schedule_flush(self, nbytes: int = 0) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        for chunk in self.session.data_to_send():
            self.written += chunk

    def close(self) -> None:
        self._flush()
        self.closed = True

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)

    def logged_in(self) -> None:
        self.is_logged_in = True

    def take(self) -> bytes:
        """What the adapter wrote since the last call."""
        data = bytes(self.written)
        self.written.clear()
        return data


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the loop run (dispatch ticks, login threads) until ``predicate`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
