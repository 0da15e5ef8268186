"""The backlog scenario: a queue larger than the broker should hold in memory.

``--backlog`` persistent messages (1 million by default) are sent with receipts to one
queue nobody consumes; the broker is stopped (SIGTERM) and started again; then one
consumer drains the queue, checking that every message arrives once and in the order
sent. Measured: send rate, the broker's peak and final RSS while the backlog builds,
restart time to a CONNECTED, the peak RSS of the restarted process (its recovery),
drain rate, and messages lost or out of order.

A broker that keeps every queued body in memory shows it here: its RSS grows with the
backlog. Core v2's aim (issue "Core v2", paging) is under 300 MB both while sending and
after a restart, and a restart under 10 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.aio import run_async
from bench.brokers import STOMP, Endpoint
from bench.load import LoadSpec, produce
from bench.results import Metric
from bench.scenarios import MIB, BrokerFactory, Log, Options, _m
from bench.stomp_client import Frame, StompError, encode_frame
from bench.sysinfo import peak_rss_bytes, rss_bytes

__all__ = ["DrainResult", "backlog", "drain"]

#: Cumulative ACK every this many messages while draining (ack:client).
ACK_EVERY = 100


@dataclass(slots=True)
class DrainResult:
    received: int = 0
    unique: int = 0
    out_of_order: int = 0
    first_ns: int = 0
    last_ns: int = 0

    @property
    def rate(self) -> float:
        return (self.unique - 1) * 1e9 / max(1, self.last_ns - self.first_ns)


async def drain(
    endpoint: Endpoint, destination: str, count: int, prefetch: int, timeout: float
) -> DrainResult:
    """Consume ``count`` messages of ``destination``, checking ``bench-seq`` order."""
    loop = asyncio.get_running_loop()
    result = DrainResult()
    conn = await endpoint.connect()
    seen = bytearray(count)
    done: asyncio.Future[None] = loop.create_future()
    expected = 0
    since_ack = 0

    def on_frame(frame: Frame) -> None:
        nonlocal expected, since_ack
        if frame.command == "ERROR":
            if not done.done():
                done.set_exception(StompError(f"drain got ERROR: {frame.headers}"))
            return
        if frame.command != "MESSAGE":
            return
        now = time.monotonic_ns()
        result.received += 1
        if result.received == 1:
            result.first_ns = now
        result.last_ns = now
        seq = int(frame.headers["bench-seq"])
        if seq != expected:
            result.out_of_order += 1
        expected = seq + 1
        if seq < count and not seen[seq]:
            seen[seq] = 1
            result.unique += 1
        since_ack += 1
        if since_ack >= ACK_EVERY or result.unique >= count:
            conn.write_raw(encode_frame("ACK", {"id": frame.headers["ack"]}))
            since_ack = 0
        if result.unique >= count and not done.done():
            done.set_result(None)

    conn.set_handler(on_frame)
    sub = {
        "id": "0",
        "destination": destination,
        "ack": "client",
        "activemq.prefetchSize": str(prefetch),
        "prefetch-count": str(prefetch),
    }
    try:
        await conn.request("SUBSCRIBE", sub, "subscribed")
        finished, _ = await asyncio.wait(
            [done, conn.protocol.closed], timeout=timeout, return_when="FIRST_COMPLETED"
        )
        if not finished:
            raise TimeoutError(f"drain got {result.unique}/{count} messages in time")
        if done not in finished:
            raise StompError(f"drain connection closed after {result.unique} messages")
        done.result()
        await conn.request("UNSUBSCRIBE", {"id": "0"}, "unsubscribed")
    finally:
        if not conn.protocol.closed.done():
            await conn.disconnect()
        conn.close()
    return result


def backlog(factory: BrokerFactory, opts: Options, log: Log) -> tuple[list[Metric], str]:
    """Build a backlog, restart the broker over it, drain it in order."""
    count = opts.backlog
    spec = LoadSpec(
        queue=f"bench.backlog.{uuid.uuid4().hex[:8]}",
        count=count,
        size=opts.size,
        window=opts.window,
        timeout=opts.timeout,
    )
    broker = factory(Path("backlog"), (STOMP,))
    try:
        broker.start()
        tls = broker.tls_info
        log(f"  {broker.describe()} ready; sending {count:,} persistent messages")
        sent = run_async(produce(broker.endpoint, spec))
        send_rate = sent.confirmed * 1e9 / max(1, sent.end_ns - sent.start_ns)
        send_peak = peak_rss_bytes(broker.pid) / MIB
        send_end = rss_bytes(broker.pid) / MIB
        log(f"  sent at {send_rate:,.0f} msg/s; RSS peak {send_peak:.0f} MiB, now {send_end:.0f}")
        broker.stop(timeout=300.0)
        restart = broker.start(timeout=opts.timeout)
        restart_peak = peak_rss_bytes(broker.pid) / MIB
        restart_rss = rss_bytes(broker.pid) / MIB
        log(f"  restarted in {restart:.2f} s; RSS peak {restart_peak:.0f} MiB")
        drained = run_async(
            drain(broker.endpoint, spec.destination, count, opts.prefetch or 1000, opts.timeout)
        )
        drain_end = rss_bytes(broker.pid) / MIB
        log(
            f"  drained {drained.unique:,} at {drained.rate:,.0f} msg/s, "
            f"{drained.out_of_order} out of order"
        )
    finally:
        broker.stop(timeout=300.0)
    label = f"backlog of {count:,}"
    metrics = [
        _m("backlog.send", f"{label}: send rate (receipted)", send_rate, "msg/s", "higher", 0),
        _m("backlog.rss_send_peak", f"{label}: RSS peak while sending", send_peak, "MiB", "lower"),
        _m("backlog.rss_sent", f"{label}: RSS once sent", send_end, "MiB", "lower"),
        _m("backlog.restart", f"{label}: restart to CONNECTED", restart, "s", "lower", 2),
        _m(
            "backlog.rss_restart_peak",
            f"{label}: RSS peak of the restart",
            restart_peak,
            "MiB",
            "lower",
        ),
        _m("backlog.rss_restarted", f"{label}: RSS after the restart", restart_rss, "MiB", "lower"),
        _m("backlog.drain", f"{label}: drain rate", drained.rate, "msg/s", "higher", 0),
        _m("backlog.rss_drained", f"{label}: RSS once drained", drain_end, "MiB", "lower"),
        _m("backlog.lost", f"{label}: messages lost", count - drained.unique, "", "lower", 0),
        _m("backlog.order", f"{label}: out of order", drained.out_of_order, "", "lower", 0),
    ]
    return metrics, tls
