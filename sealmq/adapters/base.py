"""The seam between the network driver and a protocol adapter.

The driver (``sealmq.net``) owns the socket; an adapter owns one connection's
protocol meaning. The driver calls the :class:`Session` methods; the adapter
reaches back only through the :class:`Link` it is handed, so adapters never
import the network layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Link", "Session", "SessionFactory"]


class Link(Protocol):
    """What an adapter may ask of the connection it serves."""

    @property
    def peer(self) -> str:
        """The remote address, for logs."""
        ...

    def schedule_flush(self) -> None:
        """Output is waiting in the session: write it out once, at the end of this loop tick."""
        ...

    def close(self) -> None:
        """Flush what is pending, then close the connection."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle: ...


class Session(Protocol):
    """One connection's protocol handler, driven by the network layer."""

    def connection_made(self, link: Link) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...

    def connection_lost(self, exc: BaseException | None) -> None: ...

    def data_to_send(self) -> list[bytes]:
        """Drain the bytes the session wants written."""
        ...

    def pause_writing(self) -> None:
        """The transport's buffer is full: stop producing deliveries."""
        ...

    def resume_writing(self) -> None: ...

    def shutdown(self, reason: str) -> None:
        """The broker is stopping or can no longer serve: tell the peer why, then close."""
        ...


SessionFactory = Callable[[], Session]
