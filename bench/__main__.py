"""``python -m bench``: sealmq vs ActiveMQ over STOMP 1.2 + TLS, reported as ratios."""

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
from bench.brokers import BENCH_DIR, WORK_ROOT, Broker, BrokerUnavailable, make_broker
from bench.results import BrokerReport, markdown_table, record, text_table
from bench.sysinfo import machine

RESULTS_MD = BENCH_DIR / "RESULTS.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="STOMP-over-TLS benchmark: sealmq and ActiveMQ 5.17 side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--broker",
        choices=["sealmq", "activemq", "both", "null"],
        default="both",
        help="null: an in-memory no-op STOMP server that measures the client's own ceiling",
    )
    p.add_argument("--scenario", choices=["throughput", "latency", "idle", "all"], default="all")
    p.add_argument("-n", "--messages", type=int, default=20000, help="throughput: messages")
    p.add_argument("--size", type=int, default=1024, help="message body bytes")
    p.add_argument("--window", type=int, default=100, help="outstanding SEND receipts")
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
        help="1: producer+consumer on one event loop; 2: one process each",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    p.add_argument("--timeout", type=float, default=600.0, help="per-load stall timeout (s)")
    p.add_argument("--activemq-heap", default="1g", help="ActiveMQ -Xms/-Xmx")
    p.add_argument(
        "--activemq-transport",
        choices=["stomp+ssl", "stomp+nio+ssl"],
        default="stomp+ssl",
        help="ActiveMQ connector scheme",
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
    )

    def factory(sub: Path) -> Broker:
        return make_broker(
            name,
            run_dir / name / sub,
            server_hostname=args.tls_server_name,
            activemq_heap=args.activemq_heap,
            activemq_transport=args.activemq_transport,
        )

    report.description = factory(Path("probe")).describe()
    which = {"throughput", "latency", "idle"} if args.scenario == "all" else {args.scenario}
    _log(f"== {report.description}")
    if "idle" in which:
        metrics, report.tls = scenarios.idle(factory, opts, _log)
        report.metrics += metrics
    if which & {"throughput", "latency"}:
        metrics, report.tls = scenarios.loads(factory, opts, which, _log)
        report.metrics += metrics


def _describe(args: argparse.Namespace, reports: list[BrokerReport]) -> list[str]:
    m = machine()
    lines = [
        f"- machine: {m.describe()}",
        f"- client: {args.client_procs} process(es), {loop_name()}, STOMP 1.2 over TLS, "
        f"{args.size} B persistent messages, receipt window {args.window}, ack "
        f"`{args.ack}`, prefetch {args.prefetch}",
    ]
    for r in reports:
        state = f"**{r.error}**" if r.error else f"TLS {r.tls}"
        lines.append(f"- {r.broker}: {r.description}; {state}")
    return lines


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
    names = ["activemq", "sealmq"] if args.broker == "both" else [args.broker]
    if min(args.messages, args.repeat, args.starts, args.window) < 1 or args.rate <= 0:
        _parser().error("--messages/--repeat/--starts/--window must be >= 1, --rate > 0")
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
        key = f"{dt.date.today().isoformat()} {command}"
        record(RESULTS_MD, key, _section(args, command, reports))
        _log(f"recorded in {RESULTS_MD}")
    if failed or not ran or args.keep_work:
        _log(f"work dir kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
