"""The one driver that runs any protocol session over an asyncio transport.

The driver is the only place that touches the socket. A session's output is
written once per loop tick with ``writelines``, so a burst of deliveries
becomes one TLS write instead of one per frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from sealmq.adapters.base import Session

__all__ = ["StreamDriver"]

log = logging.getLogger("sealmq.net")


class StreamDriver(asyncio.Protocol):
    """An asyncio protocol that feeds a :class:`Session` and serves as its ``Link``."""

    def __init__(self, session: Session, on_close: Callable[[StreamDriver], None]) -> None:
        self.session = session
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False
        self._closed = False
        self._peer = "?"

    # ----------------------------------------------------------------- asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has the Transport API but does not subclass it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer = f"{peer[0]}:{peer[1]}"
        self.session.connection_made(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.session.data_received(data)
        except Exception:
            # A bug must cost this connection only, never the broker.
            log.exception("session failed on input from %s; closing", self._peer)
            self.abort()

    def eof_received(self) -> bool:
        self.session.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        try:
            self.session.connection_lost(exc)
        finally:
            self._on_close(self)

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()

    # ----------------------------------------------------------------- Link

    @property
    def peer(self) -> str:
        return self._peer

    def schedule_flush(self) -> None:
        if not self._flush_pending and not self._closed:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        chunks = self.session.data_to_send()
        if chunks and self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(chunks)

    def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)
