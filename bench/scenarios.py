"""The scenarios: STOMP idle (cold start + idle RSS), throughput and latency at a fixed
rate; MQTT QoS 1 with persistent sessions, and QoS 0 fan-out."""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.brokers import MQTT, STOMP, WSS_MQTT, WSS_STOMP, Broker, Endpoint, MqttEndpoint
from bench.load import LoadResult, LoadSpec, run_load
from bench.mqtt_load import MqttSpec, run_mqtt_load
from bench.results import Better, Metric, percentile
from bench.stomp_fanout import FanoutSpec, fanout_topic, run_stomp_fanout
from bench.sysinfo import BackgroundMeter, cpu_seconds, rss_bytes

MIB = 1024 * 1024
PCT = "% of a core"
# Above this much CPU used by unrelated processes during a measurement, say so.
NOISY_BACKGROUND_PCT = 10.0

STOMP_SCENARIOS = ("idle", "throughput", "latency", "stomp-fanout")
MQTT_SCENARIOS = ("mqtt-qos1", "mqtt-fanout")
#: Run only when asked for by name: long, and not part of "all".
STOMP_EXTRA_SCENARIOS = ("backlog", "selectors", "priority")
# The same durable loads through the brokers' secure WebSocket listeners.
WSS_STOMP_SCENARIOS = ("wss-throughput", "wss-latency")
WSS_MQTT_SCENARIOS = ("wss-mqtt-qos1", "wss-mqtt-latency")
WSS_SCENARIOS = WSS_STOMP_SCENARIOS + WSS_MQTT_SCENARIOS
GROUPS = {
    "stomp": frozenset(STOMP_SCENARIOS),
    "mqtt": frozenset(MQTT_SCENARIOS),
    "wss": frozenset(WSS_SCENARIOS),
    "all": frozenset(STOMP_SCENARIOS + MQTT_SCENARIOS + WSS_SCENARIOS),
}

# factory(instance sub-folder, listeners to open)
BrokerFactory = Callable[[Path, tuple[str, ...]], Broker]
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Options:
    messages: int = 20000
    size: int = 1024
    window: int = 100
    ack: str = "client-individual"
    prefetch: int = 1000
    warmup: int = 10000
    repeat: int = 3
    rate: float = 500.0
    duration: float = 10.0
    starts: int = 3
    idle_settle: float = 5.0
    procs: int = 1
    uvloop: bool = True
    timeout: float = 600.0
    subscribers: int = 10  # mqtt-fanout, stomp-fanout
    backlog: int = 1_000_000  # backlog: messages queued before the restart


def _m(
    key: str,
    label: str,
    value: float,
    unit: str,
    better: Better = None,
    digits: int = 1,
    *,
    compare: bool = True,
) -> Metric:
    return Metric(key, label, value, unit, better, digits, compare)


def _spec(opts: Options, name: str, count: int, rate: float | None = None) -> LoadSpec:
    return LoadSpec(
        queue=f"bench.{name}.{uuid.uuid4().hex[:8]}",
        count=count,
        size=opts.size,
        window=opts.window,
        ack=opts.ack,
        prefetch=opts.prefetch,
        rate=rate,
        timeout=opts.timeout,
    )


def _ms(ns: float) -> float:
    return ns / 1e6


def _background(key: str, label: str, pct: float, log: Log) -> Metric:
    if pct > NOISY_BACKGROUND_PCT:
        log(f"  !! {label}: other processes used {pct:.0f}% of a core meanwhile")
    return _m(f"{key}.background", f"{label}: CPU of other processes", pct, PCT, compare=False)


def _client_cpu(key: str, label: str, result: LoadResult) -> list[Metric]:
    return [
        _m(f"{key}.client_cpu.{role}", f"{label}: client CPU, {role}", pct, PCT, compare=False)
        for role, pct in result.client_cpu_pct().items()
    ]


def idle(factory: BrokerFactory, opts: Options, log: Log) -> tuple[list[Metric], str]:
    """``opts.starts`` fresh starts: spawn → CONNECTED time; idle RSS/CPU after the last."""
    colds: list[float] = []
    idle_rss = idle_cpu = background = math.nan
    tls = "?"
    for i in range(opts.starts):
        broker = factory(Path(f"idle-{i}"), (STOMP,))
        try:
            cold = broker.start()
            colds.append(cold)
            tls = broker.tls_info
            log(f"  start {i + 1}/{opts.starts}: CONNECTED after {cold:.3f} s")
            if i == opts.starts - 1:
                meter = BackgroundMeter(broker.pid)
                meter.start()
                cpu0 = cpu_seconds(broker.pid)
                # A measurement interval, not a readiness wait: the broker is already up.
                time.sleep(opts.idle_settle)
                idle_cpu = 100 * (cpu_seconds(broker.pid) - cpu0) / opts.idle_settle
                idle_rss = rss_bytes(broker.pid) / MIB
                background = meter.stop()
        finally:
            broker.stop()
    median_ms, best_ms = 1000 * statistics.median(colds), 1000 * min(colds)
    metrics = [
        _m("idle.cold", "cold start, spawn → CONNECTED, median", median_ms, "ms", "lower", 0),
        _m("idle.cold_min", f"cold start, best of {len(colds)}", best_ms, "ms", "lower", 0),
        _m("idle.rss", f"idle RSS, {opts.idle_settle:g} s after ready", idle_rss, "MiB", "lower"),
        _m("idle.cpu", "idle broker CPU", idle_cpu, PCT, "lower", 2),
        _background("idle", "idle", background, log),
    ]
    return metrics, tls


def loads(
    factory: BrokerFactory, opts: Options, which: set[str], log: Log
) -> tuple[list[Metric], str]:
    """One broker instance: warm-up, then throughput and/or fixed-rate latency."""
    broker = factory(Path("load"), (STOMP,))
    metrics: list[Metric] = []
    try:
        cold = broker.start()
        where = broker.where
        log(f"  {broker.describe()} ready in {cold:.2f} s on {where} ({broker.tls_info})")
        if opts.warmup and which & {"throughput", "latency"}:
            spec = _spec(opts, "warmup", opts.warmup)
            run_load(broker.endpoint, spec, procs=opts.procs, uvloop=opts.uvloop)
            log(f"  warm-up: {opts.warmup} messages")
        if "throughput" in which:
            metrics += _throughput(broker, opts, log)
        if "latency" in which:
            metrics += _latency(broker, opts, log)
        if "stomp-fanout" in which:
            metrics += _stomp_fanout(broker, opts, log)
        return metrics, broker.tls_info
    finally:
        broker.stop()


@dataclass(frozen=True, slots=True)
class _Run:
    result: LoadResult
    rate: float
    broker_cpu_s: float
    rss_before: float
    rss_end: float
    background: float


def _measure(broker: Broker, spec: LoadSpec, opts: Options, endpoint: Endpoint) -> _Run:
    return _measure_run(
        broker, lambda: run_load(endpoint, spec, procs=opts.procs, uvloop=opts.uvloop)
    )


def _measure_run(broker: Broker, load: Callable[[], LoadResult]) -> _Run:
    meter = BackgroundMeter(broker.pid)
    rss_before = rss_bytes(broker.pid) / MIB
    cpu0 = cpu_seconds(broker.pid)
    meter.start()
    result = load()
    background = meter.stop()
    broker_cpu = cpu_seconds(broker.pid) - cpu0
    rss_end = rss_bytes(broker.pid) / MIB
    c = result.consumer
    rate = (c.unique - 1) * 1e9 / max(1, c.last_ns - c.first_ns)
    return _Run(result, rate, broker_cpu, rss_before, rss_end, background)


def _throughput(
    broker: Broker,
    opts: Options,
    log: Log,
    endpoint: Endpoint | None = None,
    k: str = "tput",
    t: str = "throughput",
) -> list[Metric]:
    endpoint = endpoint or broker.endpoint
    runs: list[_Run] = []
    for i in range(opts.repeat):
        run = _measure(broker, _spec(opts, k.replace(".", "-"), opts.messages), opts, endpoint)
        runs.append(run)
        log(f"  {t} run {i + 1}/{opts.repeat}: {run.rate:,.0f} msg/s")
    ranked = sorted(runs, key=lambda r: r.rate)
    run = ranked[(len(ranked) - 1) // 2]  # the median run (the lower one for even counts)
    c, p = run.result.consumer, run.result.producer
    confirmed = p.confirmed * 1e9 / max(1, p.end_ns - p.start_ns)
    lat = sorted(c.latencies_ns)
    metrics = [_m(f"{k}.consume", f"{t}: consumed, first → last", run.rate, "msg/s", "higher", 0)]
    if len(runs) > 1:
        n = len(runs)
        metrics += [
            _m(f"{k}.worst", f"{t}: worst of {n} runs", ranked[0].rate, "msg/s", "higher", 0),
            _m(f"{k}.best", f"{t}: best of {n} runs", ranked[-1].rate, "msg/s", "higher", 0),
        ]
    cpu_us = run.broker_cpu_s / opts.messages * 1e6
    p50, p99 = _ms(percentile(lat, 50)), _ms(percentile(lat, 99))
    metrics += [
        _m(f"{k}.confirm", f"{t}: producer receipts", confirmed, "msg/s", "higher", 0),
        _m(f"{k}.p50", f"{t}: end-to-end latency p50", p50, "ms", "lower", 2),
        _m(f"{k}.p99", f"{t}: end-to-end latency p99", p99, "ms", "lower", 2),
        _m(f"{k}.rss_before", f"{t}: broker RSS before", run.rss_before, "MiB", "lower"),
        _m(f"{k}.rss_end", f"{t}: broker RSS at end", run.rss_end, "MiB", "lower"),
        _m(f"{k}.cpu_msg", f"{t}: broker CPU per message", cpu_us, "µs", "lower", 0),
        _m(f"{k}.cpu", f"{t}: broker CPU", 100 * run.broker_cpu_s / run.result.active_s, PCT),
        *_client_cpu(k, t, run.result),
        _background(k, t, max(r.background for r in runs), log),
    ]
    return metrics


def _latency(
    broker: Broker,
    opts: Options,
    log: Log,
    endpoint: Endpoint | None = None,
    k: str = "lat",
    t: str = "latency",
) -> list[Metric]:
    count = max(2, round(opts.rate * opts.duration))
    spec = _spec(opts, k.replace(".", "-"), count, rate=opts.rate)
    run = _measure(broker, spec, opts, endpoint or broker.endpoint)
    return _latency_metrics(run, opts, log, k, t)


def _latency_metrics(run: _Run, opts: Options, log: Log, k: str, t: str) -> list[Metric]:
    lat = sorted(run.result.consumer.latencies_ns)
    t = f"{t} @ {opts.rate:g}/s"
    log(f"  {t}: p50 {_ms(percentile(lat, 50)):.2f} ms, p99 {_ms(percentile(lat, 99)):.2f} ms")
    behind = run.result.producer.max_behind_ms
    cpu_pct = 100 * run.broker_cpu_s / run.result.active_s
    cpu_us = run.broker_cpu_s / max(1, run.result.consumer.unique) * 1e6
    return [
        _m(f"{k}.p50", f"{t}: p50", _ms(percentile(lat, 50)), "ms", "lower", 2),
        _m(f"{k}.p99", f"{t}: p99", _ms(percentile(lat, 99)), "ms", "lower", 2),
        _m(f"{k}.max", f"{t}: max", _ms(lat[-1]), "ms", "lower", 2),
        _m(f"{k}.rate", f"{t}: achieved rate", run.rate, "msg/s", None, 0, compare=False),
        _m(
            f"{k}.behind",
            f"{t}: producer's worst lag behind schedule",
            behind,
            "ms",
            None,
            2,
            compare=False,
        ),
        _m(f"{k}.cpu", f"{t}: broker CPU", cpu_pct, PCT, "lower"),
        _m(f"{k}.cpu_msg", f"{t}: broker CPU per message", cpu_us, "µs", "lower", 0),
        *_client_cpu(k, t, run.result),
        _background(k, t, run.background, log),
    ]


# -- MQTT ----------------------------------------------------------------------------------


def _mqtt_spec(opts: Options, name: str, count: int, *, fanout: bool) -> MqttSpec:
    return MqttSpec(
        topic=f"bench/{name}/{uuid.uuid4().hex[:8]}",
        count=count,
        size=opts.size,
        window=opts.window,
        qos=0 if fanout else 1,
        subscribers=opts.subscribers if fanout else 1,
        persistent=not fanout,
        timeout=opts.timeout,
    )


def mqtt_loads(
    factory: BrokerFactory, opts: Options, which: set[str], log: Log
) -> tuple[list[Metric], str]:
    """One broker instance with only its MQTT listener: QoS 1 and/or QoS 0 fan-out."""
    broker = factory(Path("mqtt"), (MQTT,))
    metrics: list[Metric] = []
    try:
        cold = broker.start()
        log(f"  {broker.describe()} ready in {cold:.2f} s on {broker.where} ({broker.tls_info})")
        if "mqtt-qos1" in which:
            metrics += _mqtt_runs(broker, opts, log, fanout=False)
        if "mqtt-fanout" in which:
            metrics += _mqtt_runs(broker, opts, log, fanout=True)
        return metrics, broker.tls_info
    finally:
        broker.stop()


def _stomp_fanout(broker: Broker, opts: Options, log: Log) -> list[Metric]:
    endpoint = broker.endpoint

    def load(name: str, count: int) -> LoadResult:
        spec = FanoutSpec(
            topic=fanout_topic(name),
            count=count,
            size=opts.size,
            window=opts.window,
            subscribers=opts.subscribers,
            timeout=opts.timeout,
        )
        return run_stomp_fanout(endpoint, spec)

    return _repeated_runs(broker, opts, log, "stomp-fanout", load, fanout=True)


def _mqtt_runs(
    broker: Broker,
    opts: Options,
    log: Log,
    *,
    fanout: bool,
    endpoint: MqttEndpoint | None = None,
    t: str | None = None,
) -> list[Metric]:
    t = t or ("mqtt-fanout" if fanout else "mqtt-qos1")
    endpoint = endpoint or broker.mqtt_endpoint

    def load(name: str, count: int) -> LoadResult:
        return run_mqtt_load(endpoint, _mqtt_spec(opts, name, count, fanout=fanout))

    return _repeated_runs(broker, opts, log, t, load, fanout=fanout)


def _repeated_runs(
    broker: Broker,
    opts: Options,
    log: Log,
    t: str,
    load: Callable[[str, int], LoadResult],
    *,
    fanout: bool,
) -> list[Metric]:
    """Warm-up, then ``opts.repeat`` measured runs of ``load``; the median run's metrics."""
    k = t.replace("-", "_")
    if opts.warmup:
        load("warmup", opts.warmup)
        log(f"  {t} warm-up: {opts.warmup} messages")
    runs: list[_Run] = []
    for i in range(opts.repeat):
        run = _measure_run(broker, functools.partial(load, t, opts.messages))
        runs.append(run)
        loss = f", {run.result.lost} deliveries lost" if run.result.lost else ""
        log(f"  {t} run {i + 1}/{opts.repeat}: {run.rate:,.0f} msg/s delivered{loss}")
    ranked = sorted(runs, key=lambda r: r.rate)
    run = ranked[(len(ranked) - 1) // 2]  # the median run (the lower one for even counts)
    c, p = run.result.consumer, run.result.producer
    lat = sorted(c.latencies_ns)
    n = len(runs)
    pub_rate = p.confirmed * 1e9 / max(1, p.end_ns - p.start_ns)
    cpu_us = run.broker_cpu_s / max(1, c.received) * 1e6
    if fanout:
        what = f"delivered, total of {opts.subscribers} subscribers"
        pub = _m(f"{k}.publish", f"{t}: published, each to all", pub_rate, "msg/s", "higher", 0)
        per = "delivery"
    else:
        what = "consumed, first → last"
        pub = _m(f"{k}.puback", f"{t}: publisher PUBACKs", pub_rate, "msg/s", "higher", 0)
        per = "message"
    metrics = [_m(f"{k}.rate", f"{t}: {what}", run.rate, "msg/s", "higher", 0)]
    if n > 1:
        metrics += [
            _m(f"{k}.worst", f"{t}: worst of {n} runs", ranked[0].rate, "msg/s", "higher", 0),
            _m(f"{k}.best", f"{t}: best of {n} runs", ranked[-1].rate, "msg/s", "higher", 0),
        ]
    p50, p99 = _ms(percentile(lat, 50)), _ms(percentile(lat, 99))
    metrics += [
        pub,
        _m(f"{k}.p50", f"{t}: end-to-end latency p50", p50, "ms", "lower", 2),
        _m(f"{k}.p99", f"{t}: end-to-end latency p99", p99, "ms", "lower", 2),
    ]
    if fanout:
        lost = float(max(r.result.lost for r in runs))
        metrics.append(
            _m(f"{k}.lost", f"{t}: lost, worst run", lost, "deliveries", None, 0, compare=False)
        )
    metrics += [
        _m(f"{k}.rss_before", f"{t}: broker RSS before", run.rss_before, "MiB", "lower"),
        _m(f"{k}.rss_end", f"{t}: broker RSS at end", run.rss_end, "MiB", "lower"),
        _m(f"{k}.cpu_msg", f"{t}: broker CPU per {per}", cpu_us, "µs", "lower", 1),
        _m(f"{k}.cpu", f"{t}: broker CPU", 100 * run.broker_cpu_s / run.result.active_s, PCT),
        *_client_cpu(k, t, run.result),
        _background(k, t, max(r.background for r in runs), log),
    ]
    return metrics


# -- over WebSocket ------------------------------------------------------------------------


def wss_loads(
    factory: BrokerFactory, opts: Options, which: set[str], log: Log
) -> tuple[list[Metric], str]:
    """One broker instance with only its WebSocket listener(s): the WSS scenarios."""
    protocols = tuple(
        p
        for p, group in ((WSS_STOMP, WSS_STOMP_SCENARIOS), (WSS_MQTT, WSS_MQTT_SCENARIOS))
        if which & set(group)
    )
    broker = factory(Path("wss"), protocols)
    metrics: list[Metric] = []
    try:
        cold = broker.start()
        log(f"  {broker.describe()} ready in {cold:.2f} s on {broker.where} ({broker.tls_info})")
        if which & set(WSS_STOMP_SCENARIOS):
            endpoint = broker.wss_endpoint
            if opts.warmup:
                spec = _spec(opts, "wss-warmup", opts.warmup)
                run_load(endpoint, spec, procs=opts.procs, uvloop=opts.uvloop)
                log(f"  wss-stomp warm-up: {opts.warmup} messages")
            if "wss-throughput" in which:
                metrics += _throughput(broker, opts, log, endpoint, "wss.tput", "wss-throughput")
            if "wss-latency" in which:
                metrics += _latency(broker, opts, log, endpoint, "wss.lat", "wss-latency")
        if which & set(WSS_MQTT_SCENARIOS):
            mqtt = broker.wss_mqtt_endpoint
            if "wss-mqtt-qos1" in which:
                metrics += _mqtt_runs(
                    broker, opts, log, fanout=False, endpoint=mqtt, t="wss-mqtt-qos1"
                )
            elif opts.warmup:
                run_mqtt_load(mqtt, _mqtt_spec(opts, "wss-warmup", opts.warmup, fanout=False))
            if "wss-mqtt-latency" in which:
                metrics += _mqtt_latency(broker, opts, log, mqtt)
        return metrics, broker.tls_info
    finally:
        broker.stop()


def _mqtt_latency(broker: Broker, opts: Options, log: Log, endpoint: MqttEndpoint) -> list[Metric]:
    """QoS 1 to a persistent session, paced at ``opts.rate`` for ``opts.duration`` s."""
    count = max(2, round(opts.rate * opts.duration))
    spec = dataclasses.replace(
        _mqtt_spec(opts, "wss-mqtt-latency", count, fanout=False), rate=opts.rate
    )
    run = _measure_run(broker, functools.partial(run_mqtt_load, endpoint, spec))
    return _latency_metrics(run, opts, log, "wss.mqtt_lat", "wss-mqtt-latency")
