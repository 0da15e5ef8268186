"""The scenarios: STOMP idle (cold start + idle RSS), throughput and latency at a fixed
rate; MQTT QoS 1 with persistent sessions, and QoS 0 fan-out."""

from __future__ import annotations

import functools
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.brokers import MQTT, STOMP, Broker
from bench.load import LoadResult, LoadSpec, run_load
from bench.mqtt_load import MqttSpec, run_mqtt_load
from bench.results import Better, Metric, percentile
from bench.sysinfo import BackgroundMeter, cpu_seconds, rss_bytes

MIB = 1024 * 1024
PCT = "% of a core"
# Above this much CPU used by unrelated processes during a measurement, say so.
NOISY_BACKGROUND_PCT = 10.0

STOMP_SCENARIOS = ("idle", "throughput", "latency")
MQTT_SCENARIOS = ("mqtt-qos1", "mqtt-fanout")
GROUPS = {
    "stomp": frozenset(STOMP_SCENARIOS),
    "mqtt": frozenset(MQTT_SCENARIOS),
    "all": frozenset(STOMP_SCENARIOS + MQTT_SCENARIOS),
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
    subscribers: int = 10  # mqtt-fanout


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
        if opts.warmup:
            spec = _spec(opts, "warmup", opts.warmup)
            run_load(broker.endpoint, spec, procs=opts.procs, uvloop=opts.uvloop)
            log(f"  warm-up: {opts.warmup} messages")
        if "throughput" in which:
            metrics += _throughput(broker, opts, log)
        if "latency" in which:
            metrics += _latency(broker, opts, log)
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


def _measure(broker: Broker, spec: LoadSpec, opts: Options) -> _Run:
    return _measure_run(
        broker, lambda: run_load(broker.endpoint, spec, procs=opts.procs, uvloop=opts.uvloop)
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


def _throughput(broker: Broker, opts: Options, log: Log) -> list[Metric]:
    runs: list[_Run] = []
    for i in range(opts.repeat):
        run = _measure(broker, _spec(opts, "throughput", opts.messages), opts)
        runs.append(run)
        log(f"  throughput run {i + 1}/{opts.repeat}: {run.rate:,.0f} msg/s")
    ranked = sorted(runs, key=lambda r: r.rate)
    run = ranked[(len(ranked) - 1) // 2]  # the median run (the lower one for even counts)
    c, p = run.result.consumer, run.result.producer
    confirmed = p.confirmed * 1e9 / max(1, p.end_ns - p.start_ns)
    lat = sorted(c.latencies_ns)
    t = "throughput"
    metrics = [_m("tput.consume", f"{t}: consumed, first → last", run.rate, "msg/s", "higher", 0)]
    if len(runs) > 1:
        n = len(runs)
        metrics += [
            _m("tput.worst", f"{t}: worst of {n} runs", ranked[0].rate, "msg/s", "higher", 0),
            _m("tput.best", f"{t}: best of {n} runs", ranked[-1].rate, "msg/s", "higher", 0),
        ]
    cpu_us = run.broker_cpu_s / opts.messages * 1e6
    metrics += [
        _m("tput.confirm", f"{t}: producer receipts", confirmed, "msg/s", "higher", 0),
        _m("tput.p50", f"{t}: end-to-end latency p50", _ms(percentile(lat, 50)), "ms", "lower", 2),
        _m("tput.p99", f"{t}: end-to-end latency p99", _ms(percentile(lat, 99)), "ms", "lower", 2),
        _m("tput.rss_before", f"{t}: broker RSS before", run.rss_before, "MiB", "lower"),
        _m("tput.rss_end", f"{t}: broker RSS at end", run.rss_end, "MiB", "lower"),
        _m("tput.cpu_msg", f"{t}: broker CPU per message", cpu_us, "µs", "lower", 0),
        _m("tput.cpu", f"{t}: broker CPU", 100 * run.broker_cpu_s / run.result.active_s, PCT),
        *_client_cpu("tput", t, run.result),
        _background("tput", t, max(r.background for r in runs), log),
    ]
    return metrics


def _latency(broker: Broker, opts: Options, log: Log) -> list[Metric]:
    count = max(2, round(opts.rate * opts.duration))
    run = _measure(broker, _spec(opts, "latency", count, rate=opts.rate), opts)
    lat = sorted(run.result.consumer.latencies_ns)
    t = f"latency @ {opts.rate:g}/s"
    log(f"  {t}: p50 {_ms(percentile(lat, 50)):.2f} ms, p99 {_ms(percentile(lat, 99)):.2f} ms")
    behind = run.result.producer.max_behind_ms
    cpu_pct = 100 * run.broker_cpu_s / run.result.active_s
    return [
        _m("lat.p50", f"{t}: p50", _ms(percentile(lat, 50)), "ms", "lower", 2),
        _m("lat.p99", f"{t}: p99", _ms(percentile(lat, 99)), "ms", "lower", 2),
        _m("lat.max", f"{t}: max", _ms(lat[-1]), "ms", "lower", 2),
        _m("lat.rate", f"{t}: achieved rate", run.rate, "msg/s", None, 0, compare=False),
        _m(
            "lat.behind",
            f"{t}: producer's worst lag behind schedule",
            behind,
            "ms",
            None,
            2,
            compare=False,
        ),
        _m("lat.cpu", f"{t}: broker CPU", cpu_pct, PCT, "lower"),
        *_client_cpu("lat", t, run.result),
        _background("lat", t, run.background, log),
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


def _mqtt_runs(broker: Broker, opts: Options, log: Log, *, fanout: bool) -> list[Metric]:
    t = "mqtt-fanout" if fanout else "mqtt-qos1"
    k = t.replace("-", "_")
    endpoint = broker.mqtt_endpoint
    if opts.warmup:
        run_mqtt_load(endpoint, _mqtt_spec(opts, "warmup", opts.warmup, fanout=fanout))
        log(f"  {t} warm-up: {opts.warmup} messages")
    runs: list[_Run] = []
    for i in range(opts.repeat):
        spec = _mqtt_spec(opts, t, opts.messages, fanout=fanout)
        run = _measure_run(broker, functools.partial(run_mqtt_load, endpoint, spec))
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
