"""The one driver that runs any protocol session over an asyncio transport.

The driver is the only place that touches the socket. A session's output is
written once per loop tick with ``writelines``, so a burst of deliveries
becomes one TLS write instead of one per frame.

It also keeps the connection's deadlines (the codecs never read a clock):
the login deadline runs from the accept, TLS handshake included, until the
session calls ``Link.logged_in``; after that, a frame whose first bytes
arrived must be complete within the frame read deadline. That timer is armed
only when a read ends inside a frame and is re-armed lazily, so frames that
arrive whole cost no timer at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sealmq.adapters.base import Session
from sealmq.core.security import PeerCertificate
from sealmq.net.identity import peer_certificate

__all__ = ["NO_DEADLINES", "Deadlines", "FrameDeadline", "SlowConsumerTimer", "StreamDriver"]

log = logging.getLogger("sealmq.net")

#: Output a session may queue in one loop tick before the driver writes it out at once
#: rather than at the end of the tick, so that the transport's high-water mark (and the
#: session's pause) takes effect within a burst of deliveries, not after all of it.
FLUSH_NOW_BYTES = 64 * 1024
#: A tick's output of at least this much goes out through the backlog, whose chunks
#: larger than WRITE_SLICE_BYTES are handed to the transport a slice at a time, each
#: once it has room: a large body is then not also held whole as TLS records.
LARGE_WRITE_BYTES = 1024 * 1024
WRITE_SLICE_BYTES = 256 * 1024
#: Seconds a closed connection whose peer does not read may take to flush before it
#: is aborted (its buffered output would otherwise be held for as long as the peer waits).
CLOSE_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Deadlines:
    """A connection's time limits, in seconds; None: no limit."""

    login: float | None = None
    """From the accept (TLS handshake included) to ``Link.logged_in``."""
    frame_read: float | None = None
    """Once logged in, from a frame's first byte to its last."""


#: No deadline at all (tests that drive a session by hand).
NO_DEADLINES = Deadlines()


class FrameDeadline:
    """Times the part-received frame of a logged-in connection (``Deadlines.frame_read``).

    After each read the driver says which partial frame is pending, by a key that
    changes when a new frame begins (its offset in the stream), or None when every
    frame came in whole: no timer runs for those. While the session holds reading
    paused the peer cannot finish, so the clock starts again when reading resumes.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, expire: Callable[[], None]
    ) -> None:
        self.seconds = seconds
        self._loop = loop
        self._expire = expire
        self._key: object | None = None
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.reading_paused = False

    def watch(self, key: object | None) -> None:
        if key is None or key == self._key:
            self._key = key
            return
        self._key = key
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self.seconds, self._check)

    @property
    def armed(self) -> bool:
        """A timer runs: some frame is part-received (or was, at the last look)."""
        return self._timer is not None

    def reading_resumed(self) -> None:
        self.reading_paused = False
        self._since = self._loop.time()

    def _check(self) -> None:
        self._timer = None
        if self._key is None:
            return  # the frame came in whole meanwhile
        left = self._since + self.seconds - self._loop.time()
        if self.reading_paused:
            left = self.seconds  # not the peer's fault; look again later
        if left > 0:
            # Another frame began after the one this timer was armed for, or reading
            # was paused meanwhile.
            self._timer = self._loop.call_later(left, self._check)
            return
        self._expire()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SlowConsumerTimer:
    """ActiveMQ's abortSlowConsumer for one connection: once its transport has stayed
    full (paused) for ``seconds``, ``expire`` runs; resuming in time cancels it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, expire: Callable[[], None]
    ) -> None:
        self.seconds = seconds
        self._loop = loop
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None

    def paused(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self.seconds, self._fire)

    def resumed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._expire()


class StreamDriver(asyncio.Protocol):
    """An asyncio protocol that feeds a :class:`Session` and serves as its ``Link``.

    It is made when the connection is accepted, before any TLS handshake;
    ``on_open`` is called once the session is connected (after the handshake),
    ``on_close`` when it is lost. A connection whose handshake fails reaches
    neither: only its login timer holds the driver, until it fires.
    """

    def __init__(
        self,
        session: Session,
        on_close: Callable[[StreamDriver], None],
        *,
        on_open: Callable[[StreamDriver], None] | None = None,
        deadlines: Deadlines = NO_DEADLINES,
        write_buffer_high_water: int | None = None,
        max_slow_seconds: float | None = None,
    ) -> None:
        """``write_buffer_high_water``: bytes of output buffered for the socket above
        which the session is paused (resumed at a quarter of it); None: asyncio's.
        ``max_slow_seconds``: abort the connection, telling the peer why, once it has
        been paused that long (a slow consumer); None: never."""
        self.session = session
        self._on_open = on_open
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False
        self._closed = False
        self._peer = "?"
        self._high_water = write_buffer_high_water
        self._slow = (
            SlowConsumerTimer(self._loop, max_slow_seconds, self._too_slow)
            if max_slow_seconds is not None
            else None
        )
        self._unflushed = 0
        self._writing_paused = False
        #: The session was told to pause and not yet to resume (the backlog may re-pause
        #: the transport several times before it is out).
        self._session_paused = False
        #: Output not yet handed to the transport (only after a large write).
        self._backlog: deque[bytes | memoryview] = deque()
        self._deadlines = deadlines
        self._login_timer: asyncio.TimerHandle | None = None
        self._login_expired = False
        if deadlines.login is not None:
            self._login_timer = self._loop.call_later(deadlines.login, self._login_deadline)
        # Frame read deadline: only armed once logged in (None until then).
        self._frames: FrameDeadline | None = None

    # ----------------------------------------------------------------- asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has the Transport API but does not subclass it.
        self._transport = cast(asyncio.Transport, transport)
        if self._high_water is not None:
            self._transport.set_write_buffer_limits(high=self._high_water)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer = f"{peer[0]}:{peer[1]}"
        if self._on_open is not None:
            self._on_open(self)
        self.session.connection_made(self)
        if self._login_expired:
            # The handshake outlasted the login deadline.
            self._expire_login()

    def data_received(self, data: bytes) -> None:
        try:
            self.session.data_received(data)
            if self._frames is not None:
                self._frames.watch(self.session.pending_frame_offset())
        except Exception:
            # A bug must cost this connection only, never the broker.
            log.exception("session failed on input from %s; closing", self._peer)
            self.abort()

    def eof_received(self) -> bool:
        self.session.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._slow is not None:
            self._slow.resumed()
        self._backlog.clear()
        self._cancel_timers()
        try:
            self.session.connection_lost(exc)
        finally:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._slow is not None and not self._closed:
            self._slow.paused()
        if not self._session_paused:
            self._session_paused = True
            self.session.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        # It read down to the low-water mark: whatever comes next is a new episode.
        if self._slow is not None:
            self._slow.resumed()
        if self._backlog:
            self._write_backlog()
            if self._writing_paused:
                return
        self._session_paused = False
        self.session.resume_writing()

    def _too_slow(self) -> None:
        """The peer has not read for ``max_slow_seconds``: ActiveMQ's abortSlowConsumer."""
        if self._closed or not self._writing_paused or self._slow is None:
            return
        abort_slow_consumer(self.session, self._peer, self._slow.seconds)
        # Whatever the session said cannot get past a full buffer: do not wait for it.
        self.abort()

    # ----------------------------------------------------------------- Link

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        return None if self._transport is None else peer_certificate(self._transport)

    def schedule_flush(self, nbytes: int = 0) -> None:
        if self._closed:
            return
        self._unflushed += nbytes
        if self._unflushed >= FLUSH_NOW_BYTES:
            # Write now: the transport pauses the session as soon as it is full.
            self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_pending = False
        self._flush()

    def _flush(self) -> None:
        hinted, self._unflushed = self._unflushed, 0
        chunks = self.session.data_to_send()
        if chunks and self._transport is not None and not self._transport.is_closing():
            if self._backlog or hinted >= LARGE_WRITE_BYTES:
                self._backlog.extend(chunks)
                self._write_backlog()
            else:
                self._transport.writelines(_coalesce(chunks))

    def _write_backlog(self) -> None:
        """Hand the backlog to the transport, a slice of each large chunk at a time,
        until it is empty or the transport is full (``pause_writing``)."""
        transport, backlog = self._transport, self._backlog
        while backlog and not self._writing_paused:
            if transport is None or transport.is_closing():
                backlog.clear()
                return
            chunk = backlog[0]
            if len(chunk) > WRITE_SLICE_BYTES:
                view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                backlog[0] = view[WRITE_SLICE_BYTES:]
                transport.write(view[:WRITE_SLICE_BYTES])
            else:
                small = []
                while backlog and len(backlog[0]) <= WRITE_SLICE_BYTES:
                    small.append(backlog.popleft())
                transport.writelines(small)

    def close(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._flush()
        if self._backlog:
            self._transport.writelines(list(self._backlog))
            self._backlog.clear()
        self._transport.close()
        if self._writing_paused:
            # A peer that does not read would keep the buffer (and this connection) forever.
            self._loop.call_later(CLOSE_GRACE_SECONDS, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self._closed:
            log.info("connection from %s did not take its last output in time; cut", self._peer)
            self.abort()

    def abort(self) -> None:
        self._backlog.clear()
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._frames is not None:
            self._frames.reading_paused = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._frames is not None and self._frames.reading_paused:
            self._frames.reading_resumed()  # the frame's clock starts again
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback)

    def logged_in(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        seconds = self._deadlines.frame_read
        if seconds is not None and not self._closed and self._frames is None:
            self._frames = FrameDeadline(self._loop, seconds, self._frame_expired)
            # A frame may have begun while the login was checked.
            self._frames.watch(self.session.pending_frame_offset())

    # ----------------------------------------------------------------- deadlines

    def _login_deadline(self) -> None:
        self._login_timer = None
        if self._closed:
            return
        if self._transport is None:
            # Still in the TLS handshake, which has the same timeout; if it completes
            # after all, connection_made closes the connection.
            self._login_expired = True
            return
        self._expire_login()

    def _expire_login(self) -> None:
        seconds = self._deadlines.login
        log.info("connection from %s did not log in within %g s; closing", self._peer, seconds)
        self.session.deadline_expired(f"Not logged in within {seconds:g} s")

    def _frame_expired(self) -> None:
        if self._closed or self._frames is None:
            return
        seconds = self._frames.seconds
        log.info("client %s sent part of a frame and not the rest in %g s", self._peer, seconds)
        self.session.deadline_expired(f"Frame not completed within {seconds:g} s")

    def _cancel_timers(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if self._frames is not None:
            self._frames.cancel()


def abort_slow_consumer(session: Session, peer: str, seconds: float) -> None:
    """Log and tell ``session`` that its peer kept the send buffer full too long."""
    log.warning("slow consumer: %s kept its send buffer full for %.3g s; closing it", peer, seconds)
    session.abort_slow_consumer(f"Slow consumer: the connection read too little for {seconds:g} s")


#: A tick's small chunks are joined up to this many bytes before they are written.
COALESCE_BYTES = 256 * 1024


def _coalesce(chunks: list[bytes]) -> list[bytes]:
    """Join a tick's chunks into one when they are small together.

    The TLS transport seals each chunk it is handed as a record of its own, so
    ten 1 KiB deliveries written apart cost ten records (and ten seals); joined
    they cost one. Large output (a big body queued apart) is left as it is: the
    copy would cost more than the records it saves.
    """
    if len(chunks) < 2 or sum(map(len, chunks)) > COALESCE_BYTES:
        return chunks
    return [b"".join(chunks)]
