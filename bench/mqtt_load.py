"""The MQTT loads: one publisher and N subscribers on one topic, on one event loop.

Every payload starts with the message's sequence number and
``time.monotonic_ns()`` at publish (two big-endian 64-bit integers), padded to
``size`` bytes, so each delivery gives an end-to-end latency.

- **QoS 1** (``mqtt-qos1``): the subscribers have persistent sessions (MQTT
  3.1.1 clean session 0, which is what ActiveMQ maps to a durable topic
  subscription) with a QoS 1 subscription, and PUBACK every delivery; the
  publisher publishes at QoS 1 keeping at most ``window`` PUBACKs outstanding.
  Every message must arrive exactly once at every subscriber, or the run fails.
- **QoS 0** (``mqtt-fanout``): clean sessions, QoS 0 subscriptions and QoS 0
  publishes.  QoS 0 has no acknowledgement, so the flow control is end to end:
  the publisher keeps at most ``window`` messages that have not yet reached
  every subscriber (it runs on the same loop, so it sees their counts).  QoS 0
  may drop messages; a delivery still missing ``quiet`` seconds after the last
  progress is counted as lost instead of failing the run.

One process only: the QoS 0 window needs the subscribers' counts, and on the
2-core machine a second client process would take its core from the broker.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
import uuid
from dataclasses import dataclass, field

from bench.aio import run_async
from bench.brokers import MqttEndpoint
from bench.load import ConsumerResult, LoadResult, ProducerResult, filler_payload
from bench.mqtt_client import (
    PUBACK,
    PUBLISH,
    MqttConnection,
    MqttError,
    PacketHandler,
    PublishEncoder,
    puback_packet,
)

_STAMP = struct.Struct(">QQ")  # sequence number, monotonic_ns at publish
_MAX_PUBLISH_ID = 0xEFFF  # packet ids above are the client's SUBSCRIBE/UNSUBSCRIBE/ping ids


@dataclass(frozen=True, slots=True)
class MqttSpec:
    topic: str
    count: int
    size: int = 1024
    window: int = 100
    qos: int = 1  # the publishes and the subscriptions
    subscribers: int = 1
    persistent: bool = True  # subscriber sessions: clean session 0
    timeout: float = 600.0  # a stall this long fails the run
    quiet: float = 3.0  # QoS 0: missing deliveries are lost after this long without progress
    rate: float | None = None  # msgs/s; None = as fast as the window allows

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if self.size < _STAMP.size:
            raise ValueError(f"payloads need at least {_STAMP.size} bytes")
        if not 1 <= self.window < _MAX_PUBLISH_ID:
            raise ValueError(f"window must be 1..{_MAX_PUBLISH_ID - 1}")
        if self.count < 1 or self.subscribers < 1:
            raise ValueError("count and subscribers must be >= 1")


@dataclass(slots=True)
class _Subscriber:
    index: int
    spec: MqttSpec
    conn: MqttConnection
    client_id: str
    result: ConsumerResult = field(default_factory=ConsumerResult)
    seen: bytearray = field(default_factory=bytearray)
    duplicates: int = 0
    done: asyncio.Future[None] | None = None


class _Run:
    """Shared state of one load: the publisher waits on the subscribers (QoS 0)."""

    def __init__(self, spec: MqttSpec) -> None:
        self.spec = spec
        self.subs: list[_Subscriber] = []
        self.published = 0
        self.forgiven = 0  # QoS 0: deliveries given up on (lost), no longer waited for
        self.waiter: asyncio.Future[None] | None = None
        self.progress_ns = 0

    def behind(self) -> int:
        """Messages published that have not reached every subscriber (QoS 0 window)."""
        return self.published - min(s.result.unique for s in self.subs) - self.forgiven

    def on_delivery(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and self.behind() < self.spec.window:
            waiter.set_result(None)


def _make_handler(run: _Run, sub: _Subscriber) -> PacketHandler:
    spec = run.spec
    result = sub.result
    lat = result.latencies_ns
    seen = sub.seen
    count = spec.count
    conn = sub.conn
    unpack = _STAMP.unpack_from
    monotonic_ns = time.monotonic_ns

    def on_packet(first: int, body: bytes) -> None:
        now = monotonic_ns()
        if first >> 4 != PUBLISH:
            return
        pos = 2 + (body[0] << 8 | body[1])
        if first & 0x06:
            conn.write(puback_packet(body[pos] << 8 | body[pos + 1]))
            pos += 2
        seq, ts = unpack(body, pos)
        result.received += 1
        if first & 0x08:
            result.redelivered += 1
        if seq < count and not seen[seq]:
            seen[seq] = 1
            result.unique += 1
        else:
            sub.duplicates += 1
        lat.append(now - ts)
        if result.received == 1:
            result.first_ns = now
        result.last_ns = now
        run.progress_ns = now
        if run.waiter is not None:
            run.on_delivery()
        if result.unique >= count and sub.done is not None and not sub.done.done():
            sub.done.set_result(None)

    return on_packet


async def _subscribe(
    endpoint: MqttEndpoint, ctx: ssl.SSLContext, run: _Run, index: int, tag: str
) -> _Subscriber:
    spec = run.spec
    client_id = f"bench-sub{index}-{tag}"
    conn = await endpoint.connect(client_id, clean_session=not spec.persistent, ssl_context=ctx)
    sub = _Subscriber(index, spec, conn, client_id, seen=bytearray(spec.count))
    sub.done = asyncio.get_running_loop().create_future()
    conn.set_handler(_make_handler(run, sub))
    try:
        granted = await conn.subscribe(spec.topic, spec.qos)
    except BaseException:
        conn.close()
        raise
    if granted != spec.qos:
        conn.close()
        raise MqttError(f"{client_id}: asked for QoS {spec.qos}, granted {granted}")
    return sub


async def _publish(
    endpoint: MqttEndpoint, ctx: ssl.SSLContext, run: _Run, tag: str
) -> ProducerResult:
    spec = run.spec
    loop = asyncio.get_running_loop()
    result = ProducerResult()
    conn = await endpoint.connect(f"bench-pub-{tag}", ssl_context=ctx)
    result.tls = conn.tls_info
    encoder = PublishEncoder(spec.topic, spec.qos, spec.size)
    pad = filler_payload(spec.size)[_STAMP.size :]
    pack = _STAMP.pack
    outstanding = 0
    wake: asyncio.Future[None] | None = None

    def on_packet(first: int, body: bytes) -> None:
        nonlocal outstanding
        if first >> 4 != PUBACK:
            return
        outstanding -= 1
        result.confirmed += 1
        result.end_ns = time.monotonic_ns()
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait_for(fut: asyncio.Future[None], what: str) -> None:
        done, _ = await asyncio.wait(
            [fut, conn.protocol.closed], timeout=spec.timeout, return_when="FIRST_COMPLETED"
        )
        if not done:
            raise TimeoutError(f"publisher stalled: {what}")
        if fut not in done:
            raise MqttError(f"publisher connection closed by the broker ({what})")

    async def acks_below(limit: int) -> None:
        nonlocal wake
        while outstanding >= limit:
            wake = loop.create_future()
            await wait_for(wake, f"{outstanding} PUBACKs outstanding")

    async def subscribers_within_window() -> None:
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
                raise MqttError("publisher connection closed by the broker")
            if not done and run.progress_ns == before:
                # Nothing arrived for `quiet` s: QoS 0 dropped some; stop waiting for them.
                run.forgiven += run.behind() - spec.window + 1

    conn.set_handler(on_packet)
    qos1 = spec.qos == 1
    packet_id = 0
    interval_ns = int(1e9 / spec.rate) if spec.rate else 0
    result.start_ns = t0 = time.monotonic_ns()
    try:
        for seq in range(spec.count):
            if interval_ns:
                due = t0 + seq * interval_ns
                now = time.monotonic_ns()
                if due > now:
                    await asyncio.sleep((due - now) / 1e9)
                else:
                    result.max_behind_ms = max(result.max_behind_ms, (now - due) / 1e6)
            if qos1:
                if outstanding >= spec.window:
                    await acks_below(spec.window)
                packet_id = packet_id % _MAX_PUBLISH_ID + 1
            elif run.behind() >= spec.window:
                await subscribers_within_window()
            ts = time.monotonic_ns()
            conn.write(encoder.encode(pack(seq, ts) + pad, packet_id))
            result.sent += 1
            run.published += 1
            if qos1:
                outstanding += 1
            if not conn.protocol.writable:
                await conn.drain()
        if qos1:
            await acks_below(1)
        else:
            result.confirmed = result.sent
            result.end_ns = time.monotonic_ns()
            await conn.ping()  # the broker has read every PUBLISH
    finally:
        await conn.disconnect()
    return result


async def _collect(run: _Run) -> int:
    """Wait for every subscriber to have every message; return the deliveries lost."""
    spec = run.spec
    pending = [s.done for s in run.subs if s.done is not None and not s.done.done()]
    closed = [s.conn.protocol.closed for s in run.subs]
    patience = spec.timeout if spec.qos else spec.quiet
    while pending:
        before = run.progress_ns
        done, _ = await asyncio.wait(
            [*pending, *closed], timeout=patience, return_when="FIRST_COMPLETED"
        )
        for sub in run.subs:
            if sub.conn.protocol.closed.done() and sub.result.unique < spec.count:
                raise MqttError(f"{sub.client_id} closed after {sub.result.unique} messages")
        pending = [f for f in pending if not f.done()]
        if not done and run.progress_ns == before:
            if spec.qos:
                got = [s.result.unique for s in run.subs]
                raise TimeoutError(f"subscribers stalled at {got} of {spec.count}")
            break
    return sum(spec.count - s.result.unique for s in run.subs)


async def _clean_up(endpoint: MqttEndpoint, ctx: ssl.SSLContext, sub: _Subscriber) -> None:
    """Disconnect; a persistent session is then ended by a clean-session CONNECT."""
    try:
        if not sub.conn.protocol.closed.done():
            await sub.conn.ping()  # every PUBACK before it has been read
    finally:
        await sub.conn.disconnect()
    if sub.spec.persistent:
        conn = await endpoint.connect(sub.client_id, clean_session=True, ssl_context=ctx)
        await conn.disconnect()


def _aggregate(subs: list[_Subscriber]) -> ConsumerResult:
    if len(subs) == 1:
        return subs[0].result
    total = ConsumerResult()
    for sub in subs:
        r = sub.result
        total.received += r.received
        total.unique += r.unique
        total.redelivered += r.redelivered
        total.latencies_ns.extend(r.latencies_ns)
        if r.received:
            total.first_ns = min(total.first_ns or r.first_ns, r.first_ns)
            total.last_ns = max(total.last_ns, r.last_ns)
    return total


async def _load(endpoint: MqttEndpoint, spec: MqttSpec) -> LoadResult:
    run = _Run(spec)
    tag = uuid.uuid4().hex[:8]
    ctx = endpoint.ssl_context()
    try:
        for i in range(spec.subscribers):
            run.subs.append(await _subscribe(endpoint, ctx, run, i, tag))
        # The client's CPU is taken over the active part only: not the TLS handshakes of
        # the subscribers, not the clean-up.
        cpu0, t0 = time.process_time(), time.monotonic()
        producer = await _publish(endpoint, ctx, run, tag)
        lost = await _collect(run)
        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - t0
    finally:
        results = await asyncio.gather(
            *(_clean_up(endpoint, ctx, sub) for sub in run.subs), return_exceptions=True
        )
    for res in results:
        if isinstance(res, BaseException):
            raise res
    duplicates = sum(s.duplicates for s in run.subs)
    if duplicates:
        raise MqttError(f"{duplicates} duplicate deliveries without a reconnect")
    if spec.qos and (lost or producer.confirmed != spec.count):
        raise MqttError(
            f"QoS 1 lost messages: published {producer.sent}, PUBACKed {producer.confirmed}, "
            f"delivered {[s.result.unique for s in run.subs]} of {spec.count}"
        )
    roles = "publisher+subscriber" if spec.subscribers == 1 else "publisher+subscribers"
    return LoadResult(producer, _aggregate(run.subs), 1, cpu_s, wall_s, roles=roles, lost=lost)


def run_mqtt_load(endpoint: MqttEndpoint, spec: MqttSpec) -> LoadResult:
    """Run one publisher and ``spec.subscribers`` subscribers to completion on one loop."""
    return run_async(_load(endpoint, spec))
