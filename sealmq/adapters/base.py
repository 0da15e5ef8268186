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

from sealmq.core.security import PeerCertificate, Principal

__all__ = ["Authenticator", "Link", "Session", "SessionFactory"]


class Authenticator(Protocol):
    """Checks a login; every adapter takes one (:class:`sealmq.core.security.Authenticator`)."""

    async def authenticate_async(
        self,
        username: str | None,
        password: str | None,
        certificate: PeerCertificate | None = None,
        peer: str | None = None,
    ) -> Principal | None:
        """Who the client is (a password login, a listed certificate, anonymous), or None;
        ``peer``: the client's address, for failed-login throttling."""
        ...


class Link(Protocol):
    """What an adapter may ask of the connection it serves."""

    @property
    def peer(self) -> str:
        """The remote address, for logs."""
        ...

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        """The client certificate the TLS handshake verified, if the client sent one."""
        ...

    def schedule_flush(self, nbytes: int = 0) -> None:
        """Output is waiting in the session: write it out once, at the end of this loop tick.

        ``nbytes``: about how much was queued since the last call; once a tick's output
        passes a threshold it is written at once, so that a full transport pauses the
        session (``pause_writing``) in the middle of a burst of deliveries.
        """
        ...

    def close(self) -> None:
        """Flush what is pending, then close the connection."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle: ...

    def logged_in(self) -> None:
        """The peer is authenticated: its login deadline no longer applies; its frames'
        read deadline does from now on."""
        ...


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

    def abort_slow_consumer(self, reason: str) -> None:
        """The peer stopped reading for too long: tell it why (if it ever reads), close the
        core side; the driver then aborts the connection."""
        ...

    def pending_frame_offset(self) -> int | None:
        """Where, in the bytes received, the frame still arriving began; None if none is.

        The driver reads it after each ``data_received`` to time frames (see ``Link``).
        """
        ...

    def deadline_expired(self, reason: str) -> None:
        """The peer took too long to log in or to send a frame: tell it why, then close."""
        ...


SessionFactory = Callable[[], Session]
