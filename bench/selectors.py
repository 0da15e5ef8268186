"""The cost of selectors and of priority ordering (issue "ActiveMQ's destination features").

``selectors``: one queue, ``--subscribers`` consumers (10 by default) each with a
disjoint selector (``slot = <i>``); a producer sends ``--messages`` persistent messages
with receipts, header ``slot`` cycling over the consumers. Measured: consumed rate,
first message to last, and broker CPU per message; every message must reach the one
consumer that selects it.

``priority``: ``--messages`` persistent messages with priorities cycling 0-9 queued
with no consumer, then one consumer drains the queue. Measured: drain rate, broker CPU
per message, and how many arrived out of priority order (higher first, send order
within a priority, as both ActiveMQ with ``prioritizedMessages`` and sealmq promise).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from bench.aio import run_async
from bench.brokers import STOMP, Endpoint
from bench.load import filler_payload
from bench.results import Metric
from bench.scenarios import BrokerFactory, Log, Options, _m
from bench.stomp_client import Frame, StompError, ack_frame
from bench.sysinfo import cpu_seconds

__all__ = ["priority", "selectors"]


async def _send(
    endpoint: Endpoint, destination: str, count: int, opts: Options, header: str, values: int
) -> None:
    """``count`` persistent messages with receipts (``--window`` outstanding), header
    ``header`` cycling over ``values`` values and ``bench-seq`` numbering them."""
    loop = asyncio.get_running_loop()
    conn = await endpoint.connect()
    body = filler_payload(opts.size)
    outstanding = 0
    wake: asyncio.Future[None] | None = None
    errors: list[str] = []

    def on_frame(frame: Frame) -> None:
        nonlocal outstanding
        if frame.command == "RECEIPT":
            outstanding -= 1
        elif frame.command == "ERROR":
            errors.append(str(frame.headers))
        if wake is not None and not wake.done():
            wake.set_result(None)

    conn.set_handler(on_frame)
    try:
        for seq in range(count):
            while outstanding >= opts.window:
                wake = loop.create_future()
                await asyncio.wait_for(wake, opts.timeout)
                if errors:
                    raise StompError(errors[0])
            head = (
                f"SEND\ndestination:{destination}\npersistent:true\n{header}:{seq % values}\n"
                f"bench-seq:{seq}\nreceipt:{seq}\ncontent-length:{len(body)}\n\n"
            )
            conn.write_raw(head.encode() + body + b"\x00")
            outstanding += 1
            if not conn.protocol.writable:
                await conn.drain()
        while outstanding:
            wake = loop.create_future()
            await asyncio.wait_for(wake, opts.timeout)
        if errors:
            raise StompError(errors[0])
    finally:
        await conn.disconnect()
        conn.close()


async def _selective(
    endpoint: Endpoint, destination: str, count: int, opts: Options, consumers: int
) -> tuple[float, int]:
    """Consumers ``slot = i`` take their share while the producer sends; the rate from
    the first message to the last, and how many reached the wrong consumer."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    got = 0
    wrong = 0
    first = last = 0
    conns = []
    for i in range(consumers):
        conn = await endpoint.connect()
        conns.append(conn)

        def on_frame(frame: Frame, i: int = i, conn: object = conn) -> None:
            nonlocal got, wrong, first, last
            if frame.command != "MESSAGE":
                return
            now = time.monotonic_ns()
            first = first or now
            last = now
            got += 1
            if int(frame.headers["slot"]) != i:
                wrong += 1
            conn.write_raw(ack_frame(frame.headers["ack"]))  # type: ignore[attr-defined]
            if got >= count and not done.done():
                done.set_result(None)

        conn.set_handler(on_frame)
        await conn.request(
            "SUBSCRIBE",
            {
                "id": "0",
                "destination": destination,
                "ack": "client-individual",
                "selector": f"slot = {i}",
                "activemq.prefetchSize": str(opts.prefetch or 1000),
            },
            "subscribed",
        )
    try:
        await asyncio.gather(
            _send(endpoint, destination, count, opts, "slot", consumers),
            asyncio.wait_for(done, opts.timeout),
        )
    finally:
        for conn in conns:
            await conn.disconnect()
            conn.close()
    return (got - 1) * 1e9 / max(1, last - first), wrong


async def _drain_by_priority(
    endpoint: Endpoint, destination: str, count: int, opts: Options
) -> tuple[float, int]:
    """One consumer drains the queue; the rate and the deliveries out of priority order."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    got = 0
    out_of_order = 0
    previous = (10, -1)
    first = last = 0
    conn = await endpoint.connect()

    def on_frame(frame: Frame) -> None:
        nonlocal got, out_of_order, previous, first, last
        if frame.command != "MESSAGE":
            return
        now = time.monotonic_ns()
        first = first or now
        last = now
        got += 1
        key = (int(frame.headers["priority"]), int(frame.headers["bench-seq"]))
        # Higher priority first; within one, send order.
        if key[0] > previous[0] or (key[0] == previous[0] and key[1] < previous[1]):
            out_of_order += 1
        previous = key
        conn.write_raw(ack_frame(frame.headers["ack"]))
        if got >= count and not done.done():
            done.set_result(None)

    conn.set_handler(on_frame)
    try:
        await conn.request(
            "SUBSCRIBE",
            {
                "id": "0",
                "destination": destination,
                "ack": "client-individual",
                "activemq.prefetchSize": "1",  # so the broker, not the prefetch, orders them
            },
            "subscribed",
        )
        await asyncio.wait_for(done, opts.timeout)
    finally:
        await conn.disconnect()
        conn.close()
    return (got - 1) * 1e9 / max(1, last - first), out_of_order


def selectors(factory: BrokerFactory, opts: Options, log: Log) -> tuple[list[Metric], str]:
    consumers = opts.subscribers
    count = opts.messages
    destination = f"/queue/bench.selectors.{uuid.uuid4().hex[:8]}"
    broker = factory(Path("selectors"), (STOMP,))
    try:
        broker.start()
        log(f"  {broker.describe()} ready; {consumers} consumers with disjoint selectors")
        if opts.warmup:
            warm = destination + ".warmup"
            run_async(_selective(broker.endpoint, warm, opts.warmup, opts, consumers))
            log(f"  warm-up: {opts.warmup} messages")
        cpu0 = cpu_seconds(broker.pid)
        rate, wrong = run_async(_selective(broker.endpoint, destination, count, opts, consumers))
        cpu_us = (cpu_seconds(broker.pid) - cpu0) / count * 1e6
        log(f"  selectors: {rate:,.0f} msg/s, {cpu_us:.0f} µs CPU/msg, {wrong} misdelivered")
        tls = broker.tls_info
    finally:
        broker.stop()
    label = f"selectors ({consumers} consumers)"
    return [
        _m("selectors.consume", f"{label}: consumed, first → last", rate, "msg/s", "higher", 0),
        _m("selectors.cpu_msg", f"{label}: broker CPU per message", cpu_us, "µs", "lower", 0),
        _m("selectors.wrong", f"{label}: to a consumer not selecting it", wrong, "", "lower", 0),
    ], tls


def priority(factory: BrokerFactory, opts: Options, log: Log) -> tuple[list[Metric], str]:
    count = opts.messages
    destination = f"/queue/bench.priority.{uuid.uuid4().hex[:8]}"
    broker = factory(Path("priority"), (STOMP,))
    try:
        broker.start()
        log(f"  {broker.describe()} ready; queueing {count:,} messages of priorities 0-9")
        if opts.warmup:
            warm = destination + ".warmup"
            run_async(_send(broker.endpoint, warm, opts.warmup, opts, "priority", 10))
            run_async(_drain_by_priority(broker.endpoint, warm, opts.warmup, opts))
            log(f"  warm-up: {opts.warmup} messages")
        run_async(_send(broker.endpoint, destination, count, opts, "priority", 10))
        cpu0 = cpu_seconds(broker.pid)
        rate, out_of_order = run_async(
            _drain_by_priority(broker.endpoint, destination, count, opts)
        )
        cpu_us = (cpu_seconds(broker.pid) - cpu0) / count * 1e6
        log(f"  priority drain: {rate:,.0f} msg/s, {out_of_order} out of priority order")
        tls = broker.tls_info
    finally:
        broker.stop()
    label = "priority drain"
    return [
        _m("priority.drain", f"{label}: rate", rate, "msg/s", "higher", 0),
        _m("priority.cpu_msg", f"{label}: broker CPU per message", cpu_us, "µs", "lower", 0),
        _m("priority.order", f"{label}: out of priority order", out_of_order, "", "lower", 0),
    ], tls
