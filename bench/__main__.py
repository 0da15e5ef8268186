"""``python -m bench``: sealmq vs ActiveMQ (STOMP 1.2 and MQTT 3.1.1) and Mosquitto (MQTT),
all over TLS, reported as ratios."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

from bench import scenarios
from bench.aio import loop_name, set_uvloop
from bench.backlog import backlog
from bench.brokers import (
    BENCH_DIR,
    BROKER_PROTOCOLS,
    MQTT,
    STOMP,
    WORK_ROOT,
    WSS_MQTT,
    WSS_STOMP,
    Broker,
    BrokerUnavailable,
    make_broker,
)
from bench.results import BrokerReport, markdown_table, record, text_table
from bench.scenarios import (
    GROUPS,
    MQTT_SCENARIOS,
    NOISY_BACKGROUND_PCT,
    STOMP_EXTRA_SCENARIOS,
    STOMP_SCENARIOS,
    WSS_MQTT_SCENARIOS,
    WSS_SCENARIOS,
    WSS_STOMP_SCENARIOS,
)
from bench.selectors import priority, selectors
from bench.sysinfo import machine

RESULTS_MD = BENCH_DIR / "RESULTS.md"
BROKER_SETS = {
    "all": ["activemq", "rabbitmq", "sealmq", "mosquitto"],
    "both": ["activemq", "sealmq"],
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="STOMP- and MQTT-over-TLS benchmark: sealmq, ActiveMQ 5.17, RabbitMQ 3 "
        "and Mosquitto 2 side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--broker",
        choices=["sealmq", "activemq", "rabbitmq", "mosquitto", "all", "both", "null"],
        default="all",
        help="all: activemq, rabbitmq, sealmq and mosquitto (mosquitto runs only the MQTT "
        "scenarios); "
        "both: activemq and sealmq; null: an in-memory no-op STOMP/MQTT server that "
        "measures the client's own ceiling",
    )
    p.add_argument(
        "--scenario",
        choices=[
            *STOMP_SCENARIOS,
            *MQTT_SCENARIOS,
            *WSS_SCENARIOS,
            *STOMP_EXTRA_SCENARIOS,
            *GROUPS,
        ],
        action="append",
        help="repeatable (the union runs; default all): "
        "stomp: idle+throughput+latency+stomp-fanout; mqtt: mqtt-qos1+mqtt-fanout; "
        "wss: wss-throughput+wss-latency (STOMP) and wss-mqtt-qos1+wss-mqtt-latency over "
        "WebSocket+TLS (sealmq and RabbitMQ only); all: every group; by name only: backlog "
        "(--backlog messages queued, restart, drain), selectors (--subscribers consumers "
        "with disjoint selectors), priority (a queue of priorities 0-9 drained)",
    )
    p.add_argument(
        "--backlog", type=int, default=1_000_000, help="backlog scenario: messages queued"
    )
    p.add_argument("-n", "--messages", type=int, default=20000, help="throughput: messages")
    p.add_argument("--size", type=int, default=1024, help="message body bytes")
    p.add_argument(
        "--window",
        type=int,
        default=100,
        help="outstanding SEND receipts (STOMP) / PUBACKs (mqtt-qos1) / messages not yet at "
        "every subscriber (mqtt-fanout)",
    )
    p.add_argument(
        "--subscribers", type=int, default=10, help="mqtt-fanout and stomp-fanout: subscribers"
    )
    p.add_argument(
        "--ack", choices=["client-individual", "client", "auto"], default="client-individual"
    )
    p.add_argument(
        "--prefetch", type=int, default=1000, help="activemq.prefetchSize (0: omit header)"
    )
    p.add_argument(
        "--warmup", type=int, default=10000, help="unmeasured messages first (JIT warm-up)"
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="throughput runs; the median one is reported"
    )
    p.add_argument("--rate", type=float, default=500.0, help="latency scenario: msgs/s")
    p.add_argument("--duration", type=float, default=10.0, help="latency scenario: seconds")
    p.add_argument("--starts", type=int, default=3, help="idle scenario: cold starts")
    p.add_argument("--idle-settle", type=float, default=5.0, help="idle RSS after N s")
    p.add_argument(
        "--client-procs",
        type=int,
        choices=[1, 2],
        default=1,
        help="STOMP: 1: producer+consumer on one event loop; 2: one process each "
        "(MQTT loads always run on one loop)",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    p.add_argument("--timeout", type=float, default=600.0, help="per-load stall timeout (s)")
    p.add_argument("--activemq-heap", default="1g", help="ActiveMQ -Xms/-Xmx")
    p.add_argument(
        "--activemq-transport",
        choices=["stomp+ssl", "stomp+nio+ssl"],
        default="stomp+ssl",
        help="ActiveMQ STOMP connector scheme",
    )
    p.add_argument(
        "--activemq-mqtt-transport",
        choices=["mqtt+ssl", "mqtt+nio+ssl"],
        default="mqtt+ssl",
        help="ActiveMQ MQTT connector scheme",
    )
    p.add_argument(
        "--tls-server-name",
        default="localhost",
        help="TLS server name to verify (connections always go to 127.0.0.1)",
    )
    p.add_argument("--record", action="store_true", help=f"write the results to {RESULTS_MD}")
    p.add_argument("--keep-work", action="store_true", help="keep bench/work/<run> afterwards")
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _scenarios(args: argparse.Namespace) -> frozenset[str]:
    chosen: frozenset[str] = frozenset()
    for name in args.scenario or ["all"]:
        chosen |= GROUPS.get(name, frozenset({name}))
    return chosen


def _applicable(name: str, scenarios: frozenset[str]) -> frozenset[str]:
    """The chosen scenarios this broker can run (Mosquitto speaks no STOMP; only sealmq
    and RabbitMQ have WebSocket listeners in their Debian builds)."""
    protocols = BROKER_PROTOCOLS[name]
    ok = set()
    for protocol, group in (
        (STOMP, STOMP_SCENARIOS + STOMP_EXTRA_SCENARIOS),
        (MQTT, MQTT_SCENARIOS),
        (WSS_STOMP, WSS_STOMP_SCENARIOS),
        (WSS_MQTT, WSS_MQTT_SCENARIOS),
    ):
        if protocol in protocols:
            ok |= set(group)
    if name == "rabbitmq":
        # Its STOMP has no JMS selectors, and classic queues no per-message priority.
        ok -= {"selectors", "priority"}
    return scenarios & ok


def _run_broker(report: BrokerReport, args: argparse.Namespace, run_dir: Path) -> None:
    """Run the chosen scenarios for one broker, adding metrics to ``report`` as they come."""
    name = report.broker
    opts = scenarios.Options(
        messages=args.messages,
        size=args.size,
        window=args.window,
        ack=args.ack,
        prefetch=args.prefetch,
        warmup=args.warmup,
        repeat=args.repeat,
        rate=args.rate,
        duration=args.duration,
        starts=args.starts,
        idle_settle=args.idle_settle,
        procs=args.client_procs,
        uvloop=not args.no_uvloop,
        timeout=args.timeout,
        subscribers=args.subscribers,
        backlog=args.backlog,
    )

    def factory(sub: Path, protocols: tuple[str, ...]) -> Broker:
        return make_broker(
            name,
            run_dir / name / sub,
            protocols,
            server_hostname=args.tls_server_name,
            activemq_heap=args.activemq_heap,
            activemq_transport=args.activemq_transport,
            activemq_mqtt_transport=args.activemq_mqtt_transport,
        )

    which = set(_applicable(name, _scenarios(args)))
    protocols = tuple(
        p
        for p, group in (
            (STOMP, STOMP_SCENARIOS + STOMP_EXTRA_SCENARIOS),
            (MQTT, MQTT_SCENARIOS),
            (WSS_STOMP, WSS_STOMP_SCENARIOS),
            (WSS_MQTT, WSS_MQTT_SCENARIOS),
        )
        if which & set(group)
    )
    report.description = factory(Path("probe"), protocols).describe()
    _log(f"== {report.description}")
    if "idle" in which:
        metrics, report.tls = scenarios.idle(factory, opts, _log)
        report.metrics += metrics
    if which & {"throughput", "latency", "stomp-fanout"}:
        metrics, report.tls = scenarios.loads(factory, opts, which, _log)
        report.metrics += metrics
    if "backlog" in which:
        metrics, report.tls = backlog(factory, opts, _log)
        report.metrics += metrics
    if "selectors" in which:
        metrics, report.tls = selectors(factory, opts, _log)
        report.metrics += metrics
    if "priority" in which:
        metrics, report.tls = priority(factory, opts, _log)
        report.metrics += metrics
    if which & set(MQTT_SCENARIOS):
        metrics, tls = scenarios.mqtt_loads(factory, opts, which, _log)
        report.tls = tls if report.tls == "?" else report.tls
        report.metrics += metrics
    if which & set(WSS_SCENARIOS):
        metrics, tls = scenarios.wss_loads(factory, opts, which, _log)
        report.tls = tls if report.tls == "?" else report.tls
        report.metrics += metrics


def _load_note(reports: list[BrokerReport]) -> list[str]:
    """One line on how busy the rest of the machine was while each broker was measured."""
    parts: list[str] = []
    noisy = False
    for r in reports:
        samples = [m for m in r.metrics if m.key.endswith(".background")]
        if not samples:
            continue
        worst = max(samples, key=lambda m: m.value)
        parts.append(f"{r.broker} {worst.value:.0f}% ({worst.label.split(':')[0]})")
        noisy |= worst.value > NOISY_BACKGROUND_PCT
    if not parts:
        return []
    limit = f"{NOISY_BACKGROUND_PCT:.0f}%"
    verdict = (
        f"**above {limit} of a core: numbers taken under background load**"
        if noisy
        else f"all below the {limit} warning threshold"
    )
    return [f"- other processes' CPU, worst measurement per broker: {', '.join(parts)}; {verdict}"]


def _describe(args: argparse.Namespace, reports: list[BrokerReport]) -> list[str]:
    m = machine()
    chosen = _scenarios(args)
    lines = [f"- machine: {m.describe()}"]
    if chosen & set(STOMP_SCENARIOS):
        lines.append(
            f"- STOMP client: {args.client_procs} process(es), {loop_name()}, STOMP 1.2 over "
            f"TLS, {args.size} B persistent messages, receipt window {args.window}, ack "
            f"`{args.ack}`, prefetch {args.prefetch}; stomp-fanout: {args.subscribers} "
            f"`ack:auto` subscribers of one topic, non-persistent messages without receipts, at "
            f"most {args.window} messages not yet at every subscriber"
        )
    if chosen & set(MQTT_SCENARIOS):
        lines.append(
            f"- MQTT client: 1 process, {loop_name()}, MQTT 3.1.1 over TLS, {args.size} B "
            f"payloads; mqtt-qos1: 1 subscriber with a persistent session (clean session 0) "
            f"and a QoS 1 subscription, QoS 1 publisher with {args.window} PUBACKs outstanding "
            f"at most; mqtt-fanout: {args.subscribers} QoS 0 subscribers (clean sessions), "
            f"QoS 0 publisher with at most {args.window} messages not yet at every subscriber"
        )
    if chosen & set(WSS_SCENARIOS):
        lines.append(
            f"- WSS: the same STOMP and MQTT clients through a WebSocket over TLS (the "
            f"`websockets` library's sans-IO client; each write one binary message), "
            f"{args.size} B; wss-throughput / wss-mqtt-qos1 as throughput / mqtt-qos1; "
            f"wss-latency / wss-mqtt-latency paced at {args.rate:g} msg/s for "
            f"{args.duration:g} s (STOMP with receipts; MQTT QoS 1 to a persistent session)"
        )
    for r in reports:
        state = f"**{r.error}**" if r.error else f"TLS {r.tls}"
        lines.append(f"- {r.broker}: {r.description}; {state}")
    return lines + _load_note(reports)


def _section(args: argparse.Namespace, command: str, reports: list[BrokerReport]) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {when} — `{command}`", "", *_describe(args, reports)]
    ran = [r for r in reports if r.metrics]
    if ran:
        lines += ["", markdown_table(ran)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_uvloop(not args.no_uvloop)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if min(args.messages, args.repeat, args.starts, args.window, args.subscribers) < 1:
        _parser().error("--messages/--repeat/--starts/--window/--subscribers must be >= 1")
    if args.rate <= 0 or args.window >= 0xEFFF:
        _parser().error("--rate must be > 0 and --window < 61439")
    if _scenarios(args) & set(MQTT_SCENARIOS + WSS_MQTT_SCENARIOS) and args.size < 16:
        _parser().error("MQTT payloads carry a 16-byte stamp: --size must be >= 16")
    names = []
    for name in BROKER_SETS.get(args.broker, [args.broker]):
        if _applicable(name, _scenarios(args)):
            names.append(name)
        else:
            _log(f"# {name}: none of the chosen scenarios applies to it")
    if not names:
        _parser().error("no chosen broker can run the chosen scenarios")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = WORK_ROOT / f"{stamp}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv_used = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench", *argv_used])
    m = machine()
    _log(f"# {command}\n# {m.describe()}; client loop: {loop_name()}; work dir: {run_dir}")

    reports: list[BrokerReport] = []
    failed = False
    try:
        for name in names:
            report = BrokerReport(name, description=name)
            reports.append(report)
            try:
                _run_broker(report, args, run_dir)
            except BrokerUnavailable as exc:
                _log(f"!! {name} skipped: {exc}")
                report.error = f"not run: {exc}"
            except Exception as exc:
                failed = True
                _log(f"!! {name} failed: {exc}\n{traceback.format_exc()}")
                report.error = f"failed: {str(exc).splitlines()[0] if str(exc) else repr(exc)}"
    except KeyboardInterrupt:
        _log(f"!! interrupted; every broker was stopped; work dir: {run_dir}")
        return 130

    ran = [r for r in reports if r.metrics]
    print()
    print(f"# {command}")
    print("\n".join(_describe(args, reports)))
    if ran:
        print()
        print(text_table(ran))
    if args.record and ran:
        record(RESULTS_MD, command, _section(args, command, reports))
        _log(f"recorded in {RESULTS_MD}")
    if failed or not ran or args.keep_work:
        _log(f"work dir kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
