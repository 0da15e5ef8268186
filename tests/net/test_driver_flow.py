"""The driver's flow control, over a fake transport that pauses like asyncio's.

The transport calls ``pause_writing`` as soon as its buffer reaches the high-water
mark (synchronously, inside ``write``, as asyncio and uvloop do) and
``resume_writing`` when the test drains it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sealmq.net.driver import FLUSH_NOW_BYTES, WRITE_SLICE_BYTES, StreamDriver

HIGH = 1024 * 1024


class FakeTransport:
    def __init__(self, protocol: StreamDriver) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.buffered = 0
        self.high = 64 * 1024
        self.paused = self.closing = self.aborted = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high is not None
        self.high = high

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else default

    def write(self, data: bytes | memoryview) -> None:
        self.written.append(bytes(data))
        self.buffered += len(data)
        if self.buffered >= self.high and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def drain(self) -> None:
        """The peer read everything."""
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.protocol.resume_writing()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


class FakeSession:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.events: list[str] = []

    def connection_made(self, link: object) -> None: ...

    def data_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def abort_slow_consumer(self, reason: str) -> None:
        self.events.append(reason)

    def connection_lost(self, exc: BaseException | None) -> None: ...


def connect(**kw: Any) -> tuple[StreamDriver, FakeTransport, FakeSession]:
    session = FakeSession()
    driver = StreamDriver(session, lambda _: None, **kw)  # type: ignore[arg-type]
    transport = FakeTransport(driver)
    driver.connection_made(transport)  # type: ignore[arg-type]
    return driver, transport, session


@pytest.mark.asyncio
async def test_a_burst_is_written_as_it_goes_so_the_pause_comes_within_it() -> None:
    driver, transport, session = connect(write_buffer_high_water=HIGH)
    assert transport.high == HIGH
    session.out.append(b"x" * 1000)
    driver.schedule_flush(1000)
    assert transport.written == []  # small output waits for the end of the tick
    session.out.append(b"y" * FLUSH_NOW_BYTES)
    driver.schedule_flush(FLUSH_NOW_BYTES)
    assert b"".join(transport.written) == b"x" * 1000 + b"y" * FLUSH_NOW_BYTES


@pytest.mark.asyncio
async def test_a_large_body_goes_out_a_slice_at_a_time_as_the_peer_reads() -> None:
    driver, transport, session = connect(write_buffer_high_water=HIGH)
    body = bytes(range(256)) * (12 * 1024 * 4)  # 12 MiB
    session.out += [b"MESSAGE\n\n", body, b"\0"]
    driver.schedule_flush(len(body))
    # Only about the high-water mark was handed over, in slices; the session is paused.
    assert HIGH <= transport.buffered <= HIGH + WRITE_SLICE_BYTES
    assert max(map(len, transport.written)) <= WRITE_SLICE_BYTES
    assert session.events == ["pause"]
    rounds = 0
    while transport.paused:
        transport.drain()
        rounds += 1
    assert rounds >= 10
    assert b"".join(transport.written) == b"MESSAGE\n\n" + body + b"\0"
    # The session resumes once, when the whole backlog is out.
    assert session.events == ["pause", "resume"]


@pytest.mark.asyncio
async def test_a_connection_paused_too_long_is_aborted_and_told_why() -> None:
    driver, transport, session = connect(max_slow_seconds=0.05)
    transport.high = 10
    session.out.append(b"z" * 100)
    driver.schedule_flush(FLUSH_NOW_BYTES)
    assert transport.paused
    transport.drain()  # it read: the episode ends
    await asyncio.sleep(0.1)
    assert not transport.aborted
    session.out.append(b"z" * 100)
    driver.schedule_flush(FLUSH_NOW_BYTES)
    await asyncio.sleep(0.1)
    assert transport.aborted
    assert session.events[-1].startswith("Slow consumer")


@pytest.mark.asyncio
async def test_closing_with_a_full_buffer_cuts_the_connection_after_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sealmq.net.driver.CLOSE_GRACE_SECONDS", 0.05)
    driver, transport, session = connect()
    transport.high = 10
    session.out.append(b"z" * 100)
    driver.schedule_flush(FLUSH_NOW_BYTES)
    driver.close()
    assert transport.closing and not transport.aborted
    await asyncio.sleep(0.1)
    assert transport.aborted
