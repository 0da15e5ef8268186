"""The STOMP topic fan-out load: one producer, N subscribers of one topic, one event loop.

The STOMP counterpart of ``mqtt-fanout``: the subscribers SUBSCRIBE to
``/topic/<name>`` with ``ack:auto`` (non-durable topic subscriptions), the
producer SENDs non-persistent messages without receipts. With no
acknowledgement the flow control is end to end, as for MQTT QoS 0: the
producer keeps at most ``window`` messages that have not yet reached every
subscriber (it runs on the same loop and sees their counts). A non-persistent
topic message may be dropped by a broker under pressure; a delivery still
missing ``quiet`` seconds after the last progress counts as lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from bench.aio import run_async
from bench.brokers import Endpoint
from bench.load import ConsumerResult, LoadResult, ProducerResult, filler_payload
from bench.stomp_client import Frame, StompConnection, StompError


@dataclass(frozen=True, slots=True)
class FanoutSpec:
    topic: str
    count: int
    size: int = 1024
    window: int = 100
    subscribers: int = 10
    timeout: float = 600.0  # a stall this long fails the run
    quiet: float = 3.0  # missing deliveries are lost after this long without progress

    @property
    def destination(self) -> str:
        return f"/topic/{self.topic}"


@dataclass(slots=True)
class _Subscriber:
    conn: StompConnection
    result: ConsumerResult = field(default_factory=ConsumerResult)
    seen: bytearray = field(default_factory=bytearray)
    duplicates: int = 0
    done: asyncio.Future[None] | None = None


class _Run:
    def __init__(self, spec: FanoutSpec) -> None:
        self.spec = spec
        self.subs: list[_Subscriber] = []
        self.published = 0
        self.forgiven = 0
        self.waiter: asyncio.Future[None] | None = None
        self.progress_ns = 0

    def behind(self) -> int:
        """Messages sent that have not reached every subscriber."""
        return self.published - min(s.result.unique for s in self.subs) - self.forgiven


def _handler(run: _Run, sub: _Subscriber) -> None:
    spec = run.spec
    result = sub.result
    seen = sub.seen
    lat = result.latencies_ns
    monotonic_ns = time.monotonic_ns

    def on_frame(frame: Frame) -> None:
        now = monotonic_ns()
        if frame.command != "MESSAGE":
            if frame.command == "ERROR" and sub.done is not None and not sub.done.done():
                sub.done.set_exception(StompError(f"subscriber got ERROR: {frame.headers}"))
            return
        headers = frame.headers
        seq = int(headers["bench-seq"])
        result.received += 1
        if seq < spec.count and not seen[seq]:
            seen[seq] = 1
            result.unique += 1
        else:
            sub.duplicates += 1
        lat.append(now - int(headers["bench-ts"]))
        if result.received == 1:
            result.first_ns = now
        result.last_ns = now
        run.progress_ns = now
        waiter = run.waiter
        if waiter is not None and not waiter.done() and run.behind() < spec.window:
            waiter.set_result(None)
        if result.unique >= spec.count and sub.done is not None and not sub.done.done():
            sub.done.set_result(None)

    sub.conn.set_handler(on_frame)


async def _produce(endpoint: Endpoint, run: _Run) -> ProducerResult:
    spec = run.spec
    loop = asyncio.get_running_loop()
    result = ProducerResult()
    conn = await endpoint.connect()
    result.tls = conn.tls_info
    body = filler_payload(spec.size)
    head = (
        f"SEND\ndestination:{spec.destination}\npersistent:false\n"
        f"content-type:application/octet-stream\ncontent-length:{len(body)}\n"
    ).encode()
    tail = b"\n" + body + b"\x00"

    async def within_window() -> None:
        while run.behind() >= spec.window:
            before = run.progress_ns
            run.waiter = loop.create_future()
            try:
                done, _ = await asyncio.wait(
                    [run.waiter, conn.protocol.closed],
                    timeout=spec.quiet,
                    return_when="FIRST_COMPLETED",
                )
            finally:
                run.waiter = None
            if conn.protocol.closed in done:
                raise StompError("producer connection closed by the broker")
            if not done and run.progress_ns == before:
                run.forgiven += run.behind() - spec.window + 1

    result.start_ns = time.monotonic_ns()
    try:
        for seq in range(spec.count):
            if run.behind() >= spec.window:
                await within_window()
            ts = time.monotonic_ns()
            conn.write_raw(head + f"bench-seq:{seq}\nbench-ts:{ts}\n".encode() + tail)
            result.sent += 1
            run.published += 1
            if not conn.protocol.writable:
                await conn.drain()
        result.confirmed = result.sent
        result.end_ns = time.monotonic_ns()
    finally:
        await conn.disconnect()  # its receipt: every SEND was read
    return result


async def _collect(run: _Run) -> int:
    spec = run.spec
    pending = [s.done for s in run.subs if s.done is not None and not s.done.done()]
    closed = [s.conn.protocol.closed for s in run.subs]
    while pending:
        before = run.progress_ns
        done, _ = await asyncio.wait(
            [*pending, *closed], timeout=spec.quiet, return_when="FIRST_COMPLETED"
        )
        for sub in run.subs:
            if sub.conn.protocol.closed.done() and sub.result.unique < spec.count:
                raise StompError(f"a subscriber was closed after {sub.result.unique} messages")
            if sub.done is not None and sub.done.done():
                sub.done.result()  # an ERROR frame raises here
        pending = [f for f in pending if not f.done()]
        if not done and run.progress_ns == before:
            break
    return sum(spec.count - s.result.unique for s in run.subs)


async def _load(endpoint: Endpoint, spec: FanoutSpec) -> LoadResult:
    run = _Run(spec)
    loop = asyncio.get_running_loop()
    try:
        for i in range(spec.subscribers):
            conn = await endpoint.connect()
            sub = _Subscriber(conn, seen=bytearray(spec.count), done=loop.create_future())
            run.subs.append(sub)
            _handler(run, sub)
            await conn.request(
                "SUBSCRIBE",
                {"id": str(i), "destination": spec.destination, "ack": "auto"},
                f"subscribed-{i}",
            )
        cpu0, t0 = time.process_time(), time.monotonic()
        producer = await _produce(endpoint, run)
        lost = await _collect(run)
        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - t0
    finally:
        results = await asyncio.gather(
            *(s.conn.disconnect() for s in run.subs), return_exceptions=True
        )
    for res in results:
        if isinstance(res, BaseException):
            raise res
    duplicates = sum(s.duplicates for s in run.subs)
    if duplicates:
        raise StompError(f"{duplicates} duplicate deliveries")
    total = ConsumerResult()
    for sub in run.subs:
        r = sub.result
        total.received += r.received
        total.unique += r.unique
        total.latencies_ns.extend(r.latencies_ns)
        if r.received:
            total.first_ns = min(total.first_ns or r.first_ns, r.first_ns)
            total.last_ns = max(total.last_ns, r.last_ns)
    return LoadResult(producer, total, 1, cpu_s, wall_s, roles="producer+subscribers", lost=lost)


def run_stomp_fanout(endpoint: Endpoint, spec: FanoutSpec) -> LoadResult:
    """Run one producer and ``spec.subscribers`` topic subscribers to completion on one loop."""
    return run_async(_load(endpoint, spec))


def fanout_topic(name: str) -> str:
    return f"bench.{name}.{uuid.uuid4().hex[:8]}"
