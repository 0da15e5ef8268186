"""The driver's deadlines and bookkeeping, over real sockets with a stand-in session.

The session here frames by line: a frame is everything up to a LF; ``LOGIN`` logs
in. It tells the driver where a part-received line began, as the codecs do, so the
driver's login and frame-read deadlines are exercised without a protocol, on both
event loops the broker may run (asyncio's and uvloop's), with and without TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from sealmq.adapters.base import Link
from sealmq.net.driver import Deadlines
from sealmq.net.server import Listeners
from sealmq.net.tls import CertPaths, client_context, ensure_certificates, server_context

#: Deadlines short enough for quick tests, long enough to be measured on a busy machine.
SHORT = 0.5
#: Bound on any wait in these tests.
TIMEOUT = 10.0

RUNNERS: dict[str, Callable[[Awaitable[None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


class LineSession:
    """Lines are frames; the first line ``LOGIN`` logs in. Records what the driver said."""

    def __init__(self) -> None:
        self.link: Link | None = None
        self.buffer = b""
        self.consumed = 0
        self.lines: list[bytes] = []
        self.expired: list[tuple[str, float]] = []
        self.lost = asyncio.Event()

    def connection_made(self, link: Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self.consumed += len(line) + 1
            self.lines.append(line)
            if line == b"LOGIN" and self.link is not None:
                self.link.logged_in()

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set()

    def data_to_send(self) -> list[bytes]:
        return []

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def shutdown(self, reason: str) -> None:
        if self.link is not None:
            self.link.close()

    def pending_frame_offset(self) -> int | None:
        return self.consumed if self.buffer else None

    def deadline_expired(self, reason: str) -> None:
        self.expired.append((reason, time.monotonic()))
        assert self.link is not None
        self.link.close()


class Served:
    """A listener of LineSessions on 127.0.0.1, and the sessions it made."""

    def __init__(self, deadlines: Deadlines, tls: ssl.SSLContext | None = None) -> None:
        self.deadlines = deadlines
        self.tls = tls
        self.listeners = Listeners()
        self.sessions: list[LineSession] = []
        self.port = 0

    async def __aenter__(self) -> Served:
        def factory() -> LineSession:
            session = LineSession()
            self.sessions.append(session)
            return session

        listener = await self.listeners.start(
            "lines", "127.0.0.1", 0, factory, self.tls, deadlines=self.deadlines
        )
        self.port = listener.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.listeners.close()

    async def session(self) -> LineSession:
        """The session of the connection accepted last, once it is connected."""
        await until(lambda: bool(self.sessions) and self.sessions[-1].link is not None)
        return self.sessions[-1]


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


@pytest.fixture
def certs(tmp_path: Path) -> CertPaths:
    return ensure_certificates(tmp_path / "tls", ["127.0.0.1"])


def run(runner: str, test: Callable[[], Awaitable[None]]) -> None:
    RUNNERS[runner](asyncio.wait_for(test(), 4 * TIMEOUT))


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
def test_a_connection_not_logged_in_by_the_deadline_is_closed(
    runner: str, use_tls: bool, certs: CertPaths
) -> None:
    async def test() -> None:
        tls = server_context(certs.cert, certs.key) if use_tls else None
        async with Served(Deadlines(login=SHORT), tls) as served:
            started = time.monotonic()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                served.port,
                ssl=client_context(certs.ca) if use_tls else None,
                server_hostname="127.0.0.1" if use_tls else None,
            )
            writer.write(b"not yet logged in\npartial")
            assert await closed_by_peer(reader)
            session = await served.session()
            [(reason, when)] = session.expired
            assert reason == f"Not logged in within {SHORT:g} s"
            assert SHORT * 0.9 <= when - started < TIMEOUT
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_logging_in_stops_the_login_deadline(runner: str) -> None:
    async def test() -> None:
        async with Served(Deadlines(login=SHORT)) as served:
            _reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"LOGIN\n")
            session = await served.session()
            await until(lambda: session.lines == [b"LOGIN"])
            await asyncio.sleep(SHORT * 2)
            assert session.expired == []
            assert not session.lost.is_set()
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_login_deadline_counts_the_tls_handshake(runner: str, certs: CertPaths) -> None:
    """A peer that never sends its ClientHello is dropped at the login deadline."""

    async def test() -> None:
        tls = server_context(certs.cert, certs.key)
        async with Served(Deadlines(login=SHORT), tls) as served:
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            assert await closed_by_peer(reader)
            assert SHORT * 0.9 <= time.monotonic() - started < TIMEOUT
            assert served.listeners.drivers == set()
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_frame_not_completed_after_login_is_cut_at_the_frame_deadline(runner: str) -> None:
    async def test() -> None:
        async with Served(Deadlines(login=TIMEOUT, frame_read=SHORT)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"LOGIN\nwhole\npart")
            session = await served.session()
            await until(lambda: len(session.lines) == 2)
            started = time.monotonic()
            for byte in b"ial line":  # more of it, in time, does not extend the deadline
                if writer.is_closing() or reader.at_eof():
                    break
                with contextlib.suppress(RuntimeError, ConnectionError):
                    writer.write(bytes([byte]))
                await asyncio.sleep(SHORT / 10)
            assert await closed_by_peer(reader)
            [(reason, when)] = session.expired
            assert reason == f"Frame not completed within {SHORT:g} s"
            assert SHORT * 0.5 <= when - started < TIMEOUT
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_each_frame_gets_its_own_deadline(runner: str) -> None:
    """Frames each finished in time keep the connection, however long the stream runs."""

    async def test() -> None:
        async with Served(Deadlines(login=TIMEOUT, frame_read=SHORT)) as served:
            _reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"LOGIN\n")
            session = await served.session()
            await until(lambda: session.lines == [b"LOGIN"])
            for n in range(8):
                # Each read ends inside a frame: the one before completes, a new one begins.
                writer.write(b"end of frame\nstart of next " if n else b"start ")
                await asyncio.sleep(SHORT * 0.4)
            writer.write(b"done\n")
            await until(lambda: session.lines[-1:] == [b"start of next done"])
            await asyncio.sleep(SHORT * 1.5)  # nothing pending: no deadline runs
            assert session.expired == []
            assert not session.lost.is_set()
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_whole_frames_arm_no_timer(runner: str) -> None:
    async def test() -> None:
        async with Served(Deadlines(login=TIMEOUT, frame_read=SHORT)) as served:
            _reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"LOGIN\n")
            session = await served.session()
            await until(lambda: session.lines == [b"LOGIN"])
            (driver,) = served.listeners.drivers
            for _ in range(50):
                writer.write(b"a whole frame\n")
                await writer.drain()
            await until(lambda: len(session.lines) == 51)
            assert driver._frames is not None and not driver._frames.armed
            writer.write(b"part")
            await until(lambda: session.buffer == b"part")
            assert driver._frames.armed
            writer.close()

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_failed_tls_handshakes_leave_no_driver_behind(runner: str, certs: CertPaths) -> None:
    async def test() -> None:
        tls = server_context(certs.cert, certs.key)
        async with Served(Deadlines(login=TIMEOUT), tls) as served:
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                writer.write(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)))
                assert await closed_by_peer(reader)
                writer.close()
            assert served.listeners.drivers == set()
            # A good connection is tracked while it lasts, and forgotten after.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", served.port, ssl=client_context(certs.ca), server_hostname="127.0.0.1"
            )
            session = await served.session()
            assert len(served.listeners.drivers) == 1
            writer.close()
            await asyncio.wait_for(session.lost.wait(), TIMEOUT)
            await until(lambda: served.listeners.drivers == set())

    run(runner, test)


@pytest.mark.parametrize("runner", RUNNERS)
def test_time_with_reading_paused_does_not_count_against_a_frame(runner: str) -> None:
    """The broker holding reading paused (flow control) is not the peer's delay."""

    async def test() -> None:
        async with Served(Deadlines(login=TIMEOUT, frame_read=SHORT)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"LOGIN\npart")
            session = await served.session()
            await until(lambda: session.buffer == b"part")
            link = session.link
            assert link is not None
            link.pause_reading()
            await asyncio.sleep(SHORT * 2)
            assert session.expired == []
            link.resume_reading()
            writer.write(b" and the rest\n")
            await until(lambda: session.lines[-1:] == [b"part and the rest"])
            assert session.expired == []
            # Paused again with a frame pending, then resumed: the full deadline from then.
            writer.write(b"again")
            await until(lambda: session.buffer == b"again")
            link.pause_reading()
            await asyncio.sleep(SHORT * 1.5)
            link.resume_reading()
            resumed = time.monotonic()
            assert await closed_by_peer(reader)
            [(reason, when)] = session.expired
            assert reason == f"Frame not completed within {SHORT:g} s"
            assert SHORT * 0.9 <= when - resumed < TIMEOUT
            writer.close()

    run(runner, test)
