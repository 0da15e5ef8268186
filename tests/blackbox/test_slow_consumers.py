"""Slow consumers at the real process: what one client that stops reading makes the broker hold.

A stuck consumer is a raw TLS socket with a small receive buffer that subscribes and
then never reads. The broker's resident memory is read from ``/proc/<pid>/status``
before and after a producer floods what the stuck consumer subscribed to; a healthy
stomp.py subscriber next to it must get everything (``[policy]`` in the README,
``docs/stomp.md`` Slow consumers). Last, a 20 MB persistent message: the peak
(``VmHWM``, reset through ``/proc/<pid>/clear_refs``) and what stays resident.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stomp

from tests.support import (
    PASSWORD,
    TIMEOUT,
    USER,
    BrokerProcess,
    Collector,
    ProcessBrokers,
    stomp_connect,
    tls_client_context,
    wait_until,
)

MIB = 1024 * 1024
BODY = b"x" * 1024


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()


class StuckClient:
    """A STOMP client over TLS that subscribes, then stops reading its socket."""

    def __init__(self, broker: BrokerProcess, destination: str, ack: str = "auto") -> None:
        sock = socket.socket()
        # A small receive window, so that the broker's side fills up soon (as a client
        # on a slow link, or one stopped in a debugger, would).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", broker.stomp_port))
        self.sock = tls_client_context(broker.ca_file).wrap_socket(
            sock, server_hostname="127.0.0.1"
        )
        self.sock.sendall(
            _frame(
                "CONNECT", "accept-version:1.2", "host:x", f"login:{USER}", f"passcode:{PASSWORD}"
            )
        )
        self._buf = b""
        assert self._read_frame().startswith(b"CONNECTED")
        self.sock.sendall(
            _frame("SUBSCRIBE", "id:stuck", f"destination:{destination}", f"ack:{ack}", "receipt:s")
        )
        assert self._read_frame().startswith(b"RECEIPT")

    def _read_frame(self) -> bytes:
        while b"\0" not in self._buf:
            chunk = self.sock.recv(65536)
            assert chunk, "closed before a whole frame"
            self._buf += chunk
        frame, _, self._buf = self._buf.partition(b"\0")
        return frame.lstrip(b"\n")

    def read_all(self, idle: float = 1.0) -> bytes:
        """Everything the broker sends until it closes or is quiet for ``idle`` seconds."""
        chunks = [self._buf]
        self._buf = b""
        deadline = time.monotonic() + TIMEOUT * 3
        while time.monotonic() < deadline:
            self.sock.settimeout(idle)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def closed_by_broker(self, timeout: float = TIMEOUT) -> bool:
        """Read and drop what comes; True once the broker closes the connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except TimeoutError:
                return False
            except (ConnectionResetError, ssl.SSLError, OSError):
                return True
        return False

    def close(self) -> None:
        self.sock.close()


@dataclass
class Frame:
    command: str
    headers: dict[str, str]
    body: bytes


class Reader:
    """A raw STOMP 1.2 consumer over TLS that reads whole frames, however large."""

    def __init__(self, broker: BrokerProcess) -> None:
        sock = socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=TIMEOUT)
        self.sock = tls_client_context(broker.ca_file).wrap_socket(
            sock, server_hostname="127.0.0.1"
        )
        self._buf = bytearray()
        self.send(
            _frame(
                "CONNECT", "accept-version:1.2", "host:x", f"login:{USER}", f"passcode:{PASSWORD}"
            )
        )
        assert self.frame().command == "CONNECTED"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        assert chunk, "closed by the broker"
        self._buf += chunk

    def frame(self) -> Frame:
        while True:
            while self._buf[:1] == b"\n":
                del self._buf[:1]
            end = self._buf.find(b"\n\n")
            if end >= 0:
                break
            self._fill()
        command, *lines = self._buf[:end].decode().split("\n")
        headers = dict(line.split(":", 1) for line in lines)
        start = end + 2
        length = int(headers.get("content-length", "-1"))
        if length >= 0:
            while len(self._buf) < start + length + 1:
                self._fill()
            stop = start + length
        else:
            while (stop := self._buf.find(b"\0", start)) < 0:
                self._fill()
        body = bytes(self._buf[start:stop])
        del self._buf[: stop + 1]
        headers.pop("content-length", None)
        return Frame(command, headers, body)

    def close(self) -> None:
        self.sock.close()


def _frame(command: str, *headers: str, body: bytes = b"") -> bytes:
    return "\n".join((command, *headers, "", "")).encode() + body + b"\0"


def _message_ids(data: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb"\nmessage-id:([^\n]+)\n", data)]


def _publish_paced(
    producer: stomp.Connection, destination: str, count: int, healthy: Collector, **headers: str
) -> None:
    """Send ``count`` messages in batches, each once the healthy subscriber has the last."""
    batch = 500
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            producer.send(destination, BODY, headers={"n": str(i), **headers})
        done = min(count, start + batch)
        wait_until(lambda done=done: healthy.messages.qsize() >= done, what=f"{done} delivered")


def _wait_settled(collector: Collector, quiet: float = 0.5) -> None:
    """Wait until nothing more has arrived for ``quiet`` seconds (bounded by TIMEOUT)."""
    seen, since = -1, time.monotonic()
    deadline = since + TIMEOUT
    while time.monotonic() < deadline:
        now = collector.messages.qsize()
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError("messages kept arriving")


def _slow_lines(broker: BrokerProcess, word: str) -> list[str]:
    return [
        line
        for line in broker.run_output().splitlines()
        if "slow consumer" in line and word in line
    ]


@pytest.mark.slow
def test_a_stuck_topic_subscriber_is_bounded_and_its_discards_logged_once(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    healthy_conn, healthy = stomp_connect(broker.stomp_port, broker.ca_file)
    healthy_conn.subscribe("/topic/flood", id="healthy", ack="auto")
    producer, _ = stomp_connect(broker.stomp_port, broker.ca_file)
    stuck = StuckClient(broker, "/topic/flood")
    try:
        before = broker.rss_bytes()
        count = 20_000
        _publish_paced(producer, "/topic/flood", count, healthy)
        after = broker.rss_bytes()
        # Without a limit the stuck subscription held all of them (+35 MB here).
        assert after - before < 15 * MIB, (before, after)
        got = [int(f.headers["n"]) for f in healthy.take(count)]
        assert got == list(range(count))
        assert len(_slow_lines(broker, "discarding the oldest")) == 1
        assert _slow_lines(broker, "discarded") == []  # the episode goes on
        # It reads again: it gets what its buffers held, then the newest 1000; caught up,
        # the episode ends with one WARNING counting exactly what it missed.
        numbers = [int(n) for n in re.findall(rb"\nn:(\d+)\n", stuck.read_all())]
        assert numbers == sorted(numbers) and numbers[-1000:] == list(range(count - 1000, count))
        wait_until(lambda: _slow_lines(broker, "discarded"), what="the discard count logged")
        (line,) = _slow_lines(broker, "discarded")
        assert "WARNING" in line and "'stuck'" in line and "flood" in line
        found = re.search(r"discarded (\d+) messages", line)
        assert found is not None and int(found.group(1)) == count - len(numbers), line
    finally:
        stuck.close()
        healthy_conn.disconnect()
        producer.disconnect()
    assert broker.stop() == 0


@pytest.mark.slow
def test_the_abort_strategy_closes_a_stuck_subscriber(processes: ProcessBrokers) -> None:
    broker = processes.new(
        sections='[policy]\nslow_consumer_strategy = "abort"\nmax_slow_duration_ms = 500\n'
    ).start()
    healthy_conn, healthy = stomp_connect(broker.stomp_port, broker.ca_file)
    healthy_conn.subscribe("/topic/flood", id="healthy", ack="auto")
    producer, _ = stomp_connect(broker.stomp_port, broker.ca_file)
    stuck = StuckClient(broker, "/topic/flood")
    try:
        _publish_paced(producer, "/topic/flood", 5000, healthy)
        wait_until(lambda: _slow_lines(broker, "closing it"), what="the slow consumer aborted")
        assert stuck.closed_by_broker()
        # The healthy subscriber and the producer go on.
        producer.send("/topic/flood", b"after", headers={"n": "last"})
        assert healthy.take(5001)[-1].headers["n"] == "last"
    finally:
        stuck.close()
        healthy_conn.disconnect()
        producer.disconnect()
    assert broker.stop() == 0


@pytest.mark.slow
def test_a_stuck_queue_consumer_leaves_the_messages_in_the_queue(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    producer, sent = stomp_connect(broker.stomp_port, broker.ca_file)
    stuck = StuckClient(broker, "/queue/work")
    count = 5000
    try:
        for i in range(count):
            headers = {"n": str(i), "persistent": "true"}
            if i == count - 1:
                headers["receipt"] = "all"
            producer.send("/queue/work", BODY * 4, headers=headers)
        wait_until(lambda: "all" in sent.receipts, what="the producer's receipt")
        # The stuck consumer took only what its buffers hold; the rest is in the queue,
        # for a consumer that reads.
        other_conn, other = stomp_connect(broker.stomp_port, broker.ca_file)
        other_conn.subscribe("/queue/work", id="other", ack="auto")
        wait_until(lambda: other.messages.qsize() >= count // 2, what="most to the other")
        _wait_settled(other)
        other_ids = {f.headers["message-id"] for f in list(other.messages.queue)}
        # Once the stuck one reads again it gets what it was handed: nothing lost or doubled.
        stuck_ids = set(_message_ids(stuck.read_all()))
        assert len(stuck_ids) < count // 2
        assert not stuck_ids & other_ids
        assert len(stuck_ids | other_ids) == count
        other_conn.disconnect()
    finally:
        stuck.close()
        producer.disconnect()
    assert broker.stop() == 0


def _status(broker: BrokerProcess, field: str) -> int:
    assert broker.proc is not None
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc status")


def _reset_peak(broker: BrokerProcess) -> None:
    """Make VmHWM (peak resident memory) start again from the current VmRSS (Linux 4.0+)."""
    assert broker.proc is not None
    Path(f"/proc/{broker.proc.pid}/clear_refs").write_text("5")


@pytest.mark.slow
def test_a_large_persistent_message_costs_few_copies_and_is_given_back(
    processes: ProcessBrokers,
) -> None:
    size = 20 * MIB
    body = bytes(range(256)) * (size // 256)
    broker = processes.new().start()
    producer, sent = stomp_connect(broker.stomp_port, broker.ca_file, auto_decode=False)
    try:
        producer.send("/queue/big", b"warm-up", headers={"persistent": "true", "receipt": "w"})
        wait_until(lambda: "w" in sent.receipts, what="warm-up receipt")
        before = broker.rss_bytes()
        _reset_peak(broker)
        producer.send("/queue/big", body, headers={"persistent": "true", "receipt": "big"})
        wait_until(lambda: "big" in sent.receipts, timeout=TIMEOUT * 3, what="receipt")
        stored_peak = _status(broker, "VmHWM") - before
        # stomp.py takes minutes to parse a 20 MB frame: read it raw.
        reader = Reader(broker)
        reader.send(_frame("SUBSCRIBE", "id:s", "destination:/queue/big", "ack:client-individual"))
        assert reader.frame().body == b"warm-up"
        frame = reader.frame()
        assert frame.body == body
        reader.send(_frame("ACK", f"id:{frame.headers['ack']}", "receipt:acked"))
        assert reader.frame().headers == {"receipt-id": "acked"}
        peak = _status(broker, "VmHWM") - before
        del frame
        # Given back: nothing keeps the body (or a copy of it) once it is acknowledged.
        wait_until(
            lambda: broker.rss_bytes() - before < size // 2,
            what=f"RSS back near {before // MIB} MiB (now {broker.rss_bytes() // MIB})",
        )
        reader.close()
    finally:
        producer.disconnect()
    # Was 4x when stored and 6.5x once delivered, and 110 MB stayed resident.
    assert stored_peak <= 2.2 * size, stored_peak / size
    assert peak <= 2.3 * size, peak / size
    assert broker.stop() == 0
