"""The load itself: one STOMP producer and one STOMP consumer on one queue.

The producer sends persistent messages, each with a ``receipt`` header, keeping
at most ``window`` receipts outstanding (optionally paced to a fixed rate).
The consumer subscribes first, ACKs every message and records end-to-end
latency from the ``bench-ts`` header (``time.monotonic_ns()``, which is the
same clock in every process on the machine).

Both roles run either on one event loop in this process (``procs=1``) or in two
spawned processes (``procs=2``) so that neither role's CPU caps the other.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import random
import string
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from bench.aio import run_async, set_uvloop
from bench.brokers import Endpoint
from bench.stomp_client import Frame, StompError, ack_frame


@dataclass(frozen=True, slots=True)
class LoadSpec:
    queue: str
    count: int
    size: int = 1024
    window: int = 100
    ack: str = "client-individual"  # or "client" or "auto"
    prefetch: int = 1000  # activemq.prefetchSize; 0 = do not send the header
    rate: float | None = None  # msgs/s; None = as fast as the receipt window allows
    timeout: float = 600.0

    @property
    def destination(self) -> str:
        return f"/queue/{self.queue}"


@dataclass(slots=True)
class ProducerResult:
    sent: int = 0
    confirmed: int = 0
    start_ns: int = 0
    end_ns: int = 0
    max_behind_ms: float = 0.0  # fixed-rate mode: worst lag behind the schedule
    cpu_s: float = math.nan  # CPU time of this role's process (procs=2 only)
    wall_s: float = math.nan  # wall time of this role's process (procs=2 only)
    tls: str = "?"


@dataclass(slots=True)
class ConsumerResult:
    received: int = 0
    unique: int = 0
    redelivered: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    cpu_s: float = math.nan
    wall_s: float = math.nan


@dataclass(slots=True)
class LoadResult:
    producer: ProducerResult
    consumer: ConsumerResult  # MQTT fan-out: every subscriber's deliveries added up
    procs: int
    client_cpu_s: float  # both roles together
    client_wall_s: float  # procs=1: the event loop's run time
    roles: str = "producer+consumer"  # what ran on the one loop (procs=1)
    lost: int = 0  # MQTT QoS 0: deliveries that never came (QoS 0 may drop)

    @property
    def active_s(self) -> float:
        """First SEND to the later of last RECEIPT and last MESSAGE."""
        end = max(self.producer.end_ns, self.consumer.last_ns)
        return (end - self.producer.start_ns) / 1e9

    def client_cpu_pct(self) -> dict[str, float]:
        """Client CPU as % of one core, per process."""
        if self.procs == 1:
            return {self.roles: 100 * self.client_cpu_s / self.client_wall_s}
        return {
            "producer": 100 * self.producer.cpu_s / self.producer.wall_s,
            "consumer": 100 * self.consumer.cpu_s / self.consumer.wall_s,
        }


def filler_payload(size: int) -> bytes:
    """`size` printable bytes, the same for every run."""
    rnd = random.Random(size)
    return "".join(rnd.choices(string.ascii_letters + string.digits, k=size)).encode()


async def produce(endpoint: Endpoint, spec: LoadSpec) -> ProducerResult:
    loop = asyncio.get_running_loop()
    result = ProducerResult()
    conn = await endpoint.connect()
    result.tls = conn.tls_info
    body = filler_payload(spec.size)
    head = (
        f"SEND\ndestination:{spec.destination}\npersistent:true\n"
        f"content-type:application/octet-stream\ncontent-length:{len(body)}\n"
    ).encode()
    tail = b"\n" + body + b"\x00"
    outstanding = 0
    wake: asyncio.Future[None] | None = None
    failure: list[BaseException] = []

    def on_frame(frame: Frame) -> None:
        nonlocal outstanding, wake
        if frame.command == "RECEIPT":
            outstanding -= 1
            result.confirmed += 1
            result.end_ns = time.monotonic_ns()
        elif frame.command == "ERROR":
            failure.append(StompError(f"producer got ERROR: {frame.headers} {frame.body[:300]!r}"))
        else:
            return
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait_outstanding_below(limit: int) -> None:
        nonlocal wake
        while outstanding >= limit:
            if failure:
                raise failure[0]
            wake = loop.create_future()
            done, _ = await asyncio.wait(
                [wake, conn.protocol.closed], timeout=spec.timeout, return_when="FIRST_COMPLETED"
            )
            if not done:
                raise TimeoutError(f"producer stalled with {outstanding} receipts outstanding")
            if conn.protocol.closed in done and outstanding >= limit:
                raise StompError("producer connection closed by the broker")
        if failure:
            raise failure[0]

    conn.set_handler(on_frame)
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
            if outstanding >= spec.window:
                await wait_outstanding_below(spec.window)
            ts = time.monotonic_ns()
            conn.write_raw(
                head + f"bench-seq:{seq}\nbench-ts:{ts}\nreceipt:{seq}\n".encode() + tail
            )
            outstanding += 1
            result.sent += 1
            if not conn.protocol.writable:
                await conn.drain()
        await wait_outstanding_below(1)
    finally:
        if not conn.protocol.closed.done():
            await conn.disconnect()
        conn.close()
    return result


async def consume(
    endpoint: Endpoint, spec: LoadSpec, on_ready: Callable[[], None]
) -> ConsumerResult:
    loop = asyncio.get_running_loop()
    result = ConsumerResult()
    conn = await endpoint.connect()
    seen = bytearray(spec.count)
    done: asyncio.Future[None] = loop.create_future()
    ack_mode = spec.ack
    client_ack_every = max(1, min(100, spec.prefetch // 2 if spec.prefetch else 100))
    pending_client_ack: list[str] = []
    lat = result.latencies_ns

    def on_frame(frame: Frame) -> None:
        now = time.monotonic_ns()
        if frame.command != "MESSAGE":
            if frame.command == "ERROR" and not done.done():
                done.set_exception(
                    StompError(f"consumer got ERROR: {frame.headers} {frame.body[:300]!r}")
                )
            return
        headers = frame.headers
        if ack_mode == "client-individual":
            conn.write_raw(ack_frame(headers["ack"]))
        elif ack_mode == "client":
            pending_client_ack.append(headers["ack"])
            if len(pending_client_ack) >= client_ack_every:
                conn.write_raw(ack_frame(pending_client_ack[-1]))
                pending_client_ack.clear()
        result.received += 1
        if "redelivered" in headers and headers["redelivered"] == "true":
            result.redelivered += 1
        seq = int(headers["bench-seq"])
        if seq < spec.count and not seen[seq]:
            seen[seq] = 1
            result.unique += 1
        lat.append(now - int(headers["bench-ts"]))
        if result.received == 1:
            result.first_ns = now
        result.last_ns = now
        if result.unique >= spec.count and not done.done():
            if pending_client_ack:
                conn.write_raw(ack_frame(pending_client_ack[-1]))
                pending_client_ack.clear()
            done.set_result(None)

    conn.set_handler(on_frame)
    sub = {"id": "0", "destination": spec.destination, "ack": ack_mode}
    if spec.prefetch:
        # ActiveMQ's and sealmq's header, and RabbitMQ's; each broker ignores the other.
        sub["activemq.prefetchSize"] = str(spec.prefetch)
        sub["prefetch-count"] = str(spec.prefetch)
    try:
        await conn.request("SUBSCRIBE", sub, "subscribed")
        on_ready()
        finished, _ = await asyncio.wait(
            [done, conn.protocol.closed], timeout=spec.timeout, return_when="FIRST_COMPLETED"
        )
        if not finished:
            raise TimeoutError(f"consumer got {result.unique}/{spec.count} messages in time")
        if done not in finished:
            raise StompError(f"consumer connection closed after {result.unique} messages")
        done.result()
        # Its receipt comes after the broker has processed every earlier ACK.
        await conn.request("UNSUBSCRIBE", {"id": "0"}, "unsubscribed")
    finally:
        if not conn.protocol.closed.done():
            await conn.disconnect()
        conn.close()
    return result


# -- one process ------------------------------------------------------------------------


async def _both(endpoint: Endpoint, spec: LoadSpec) -> tuple[ProducerResult, ConsumerResult]:
    ready = asyncio.Event()
    consumer = asyncio.create_task(consume(endpoint, spec, ready.set))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([consumer, waiter], return_when="FIRST_COMPLETED")
    if consumer.done():
        waiter.cancel()
        consumer.result()  # raises
        raise RuntimeError("consumer finished before subscribing")
    try:
        producer = await produce(endpoint, spec)
    except BaseException:
        consumer.cancel()
        raise
    return producer, await consumer


def _run_inline(endpoint: Endpoint, spec: LoadSpec) -> LoadResult:
    cpu0, t0 = time.process_time(), time.monotonic()
    producer, consumer = run_async(_both(endpoint, spec))
    cpu = time.process_time() - cpu0
    return LoadResult(producer, consumer, 1, cpu, time.monotonic() - t0)


# -- two processes ----------------------------------------------------------------------


def _child(
    role: str, endpoint: Endpoint, spec: LoadSpec, uvloop: bool, ready: Any, out: Any
) -> None:
    set_uvloop(uvloop)
    try:
        cpu0, t0 = time.process_time(), time.monotonic()
        res: ProducerResult | ConsumerResult
        if role == "consumer":
            res = run_async(consume(endpoint, spec, ready.set))
        else:
            res = run_async(produce(endpoint, spec))
        res.cpu_s = time.process_time() - cpu0
        res.wall_s = time.monotonic() - t0
        out.send(("ok", res))
    except BaseException as exc:  # report everything, including Ctrl-C, to the parent
        out.send(("error", f"{role}: {exc!r}\n{traceback.format_exc()}"))
    finally:
        out.close()


def _collect(conn: Connection, proc: Any, deadline: float, role: str) -> Any:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{role} process did not finish in time")
        ready = wait([conn, proc.sentinel], timeout=remaining)
        if conn in ready:
            try:
                status, payload = conn.recv()
            except EOFError:
                proc.join(5)
                raise RuntimeError(f"{role} process died (exit code {proc.exitcode})") from None
            if status != "ok":
                raise RuntimeError(payload)
            return payload
        if proc.sentinel in ready and not conn.poll():
            raise RuntimeError(f"{role} process died with exit code {proc.exitcode}")


def _run_split(endpoint: Endpoint, spec: LoadSpec, uvloop: bool) -> LoadResult:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    c_recv, c_send = ctx.Pipe(duplex=False)
    p_recv, p_send = ctx.Pipe(duplex=False)
    deadline = time.monotonic() + spec.timeout + 60
    consumer_proc = ctx.Process(
        target=_child, args=("consumer", endpoint, spec, uvloop, ready, c_send), daemon=True
    )
    producer_proc = ctx.Process(
        target=_child, args=("producer", endpoint, spec, uvloop, ready, p_send), daemon=True
    )
    procs = [consumer_proc, producer_proc]
    t0 = time.monotonic()
    try:
        consumer_proc.start()
        c_send.close()
        while not ready.wait(0.05):
            if not consumer_proc.is_alive() or c_recv.poll():
                _collect(c_recv, consumer_proc, deadline, "consumer")
                raise RuntimeError("consumer exited before subscribing")
            if time.monotonic() > deadline:
                raise TimeoutError("consumer did not subscribe in time")
        producer_proc.start()
        p_send.close()
        producer: ProducerResult = _collect(p_recv, producer_proc, deadline, "producer")
        consumer: ConsumerResult = _collect(c_recv, consumer_proc, deadline, "consumer")
        wall = time.monotonic() - t0
    finally:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()
        for proc in procs:
            if proc.pid is not None:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
    return LoadResult(producer, consumer, 2, producer.cpu_s + consumer.cpu_s, wall)


def run_load(endpoint: Endpoint, spec: LoadSpec, *, procs: int, uvloop: bool) -> LoadResult:
    """Run one producer + one consumer to completion; raises on any loss or error."""
    if procs == 1:
        result = _run_inline(endpoint, spec)
    elif procs == 2:
        result = _run_split(endpoint, spec, uvloop)
    else:
        raise ValueError("procs must be 1 or 2")
    c, p = result.consumer, result.producer
    if c.unique != spec.count or p.confirmed != spec.count:
        raise RuntimeError(
            f"lost messages: sent {p.sent}, confirmed {p.confirmed}, "
            f"consumed {c.unique}/{spec.count}"
        )
    if c.received != c.unique:
        raise RuntimeError(
            f"{c.received - c.unique} duplicate deliveries ({c.redelivered} marked redelivered)"
        )
    return result
