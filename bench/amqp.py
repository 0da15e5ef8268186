"""AMQP 1.0 over TLS, sealmq next to RabbitMQ 3 (its ``rabbitmq_amqp1_0`` plugin), with rhea.

``python -m bench.amqp [-n COUNT]`` starts each broker (as ``bench.brokers`` does, with only
an AMQP-over-TLS listener on a free port), runs ``bench/amqp/amqp_bench.js`` (Node's rhea: a
sender and a receiver on two connections, durable 1 KiB messages on a durable queue) in two
modes and prints msg/s, end-to-end latency and the broker's CPU per message, with the
sealmq/RabbitMQ ratio:

- ``window``: unsettled sends, at most 100 awaiting the broker's ``accepted`` (which sealmq
  and RabbitMQ both send only once the message is on disk); the receiver accepts each;
- ``paced``: the same at 500 msg/s, for latency.

Debian's ActiveMQ build has no AMQP transport, so RabbitMQ is the only peer here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.brokers import AMQP, BENCH_PASSWORD, BENCH_USER, Broker, RabbitMQ, Sealmq
from bench.openwire import Result
from bench.sysinfo import cpu_seconds

HERE = Path(__file__).parent / "amqp"
ROOT = Path(__file__).resolve().parent.parent
MODES = (("window", 0.0), ("paced", 500.0))
ADDRESS = {"sealmq": "queue://bench.amqp.{mode}", "rabbitmq": "/queue/bench.amqp.{mode}"}


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "rhea").is_dir():
        raise SystemExit("bench.amqp needs node and rhea: run `make install-test` (npm ci)")
    return node


def _one(broker: Broker, mode: str, rate: float, n: int, warmup: int, run: int) -> Result:
    before = cpu_seconds(broker.pid)
    address = ADDRESS[broker.name].format(mode=f"{mode}{run}")
    done = subprocess.run(
        [_node(), str(HERE / "amqp_bench.js"), str(broker.ports[AMQP]), str(broker.cafile),
         BENCH_USER, BENCH_PASSWORD, address, mode, str(n), str(warmup), str(rate)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    cpu = cpu_seconds(broker.pid) - before
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{broker.name} {mode}: {done.stdout}{done.stderr[-2000:]}")
    rate_s, p50, p99, _accepted = (float(v) for v in line.split()[1:])
    return Result(rate_s, p50, p99, cpu * 1e6 / (n + warmup))


def run_modes(
    broker: Broker, count: int, seconds: float, repeat: int = 1
) -> dict[str, list[Result]]:
    """Each of :data:`MODES` against a started ``broker``, ``repeat`` times, each run on a
    queue of its own: ``count`` messages in ``window``, ``seconds`` at the rate in
    ``paced``, each after half as many unmeasured. Runs are sorted by msg/s."""
    results = {}
    for mode, rate in MODES:
        n = count if rate == 0 else int(rate * seconds)
        runs = [_one(broker, mode, rate, n, n // 2, i) for i in range(repeat)]
        results[mode] = sorted(runs, key=lambda r: r.rate)
    return results


def median(runs: list[Result]) -> Result:
    return runs[len(runs) // 2]


def _rabbitmq_queues(broker: RabbitMQ) -> str:
    """``name durable messages`` of each queue, as ``rabbitmqctl`` lists them."""
    ctl = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
    out = subprocess.run(
        [str(ctl), "-n", "bench@localhost", "list_queues", "-q", "name", "durable", "messages"],
        env=broker.environment(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return " ".join(out.stdout.split()) or out.stderr.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=20_000, help="messages per window run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the paced run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (median shown)")
    parser.add_argument("--broker", action="append", choices=("sealmq", "rabbitmq"))
    args = parser.parse_args()
    names = args.broker or ["sealmq", "rabbitmq"]
    _node()
    runs: dict[str, dict[str, list[Result]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-amqp-") as tmp:
        for name in names:
            make = Sealmq if name == "sealmq" else RabbitMQ
            broker = make(Path(tmp) / name, "localhost", (AMQP,))
            broker.start()
            try:
                print(f"{name}: {broker.describe()}, TLS {broker.tls_info}", flush=True)
                runs[name] = run_modes(broker, args.count, args.duration, args.repeat)
                if isinstance(broker, RabbitMQ):
                    print(f"rabbitmq queues (name durable messages): {_rabbitmq_queues(broker)}")
            finally:
                broker.stop()
    header = " | ".join(names)
    print(f"\n{args.repeat} run(s) per mode, the median shown (by msg/s)")
    ratio = len(names) == 2
    print(
        f"\n| AMQP 1.0, durable 1 KiB messages, unsettled | {header} |"
        + (" ratio |" if ratio else "")
    )
    print("|---" * (len(names) + 1 + ratio) + "|")
    rows = (
        ("msg/s ↑", lambda r: r.rate, "{:,.0f}"),
        ("p50 ms ↓", lambda r: r.p50_ms, "{:.2f}"),
        ("p99 ms ↓", lambda r: r.p99_ms, "{:.2f}"),
        ("broker CPU µs/msg ↓", lambda r: r.cpu_us_per_msg, "{:.0f}"),
    )
    for mode, rate in MODES:
        label = f"{mode} ({'as fast as it goes' if rate == 0 else f'{rate:.0f} msg/s'})"
        for what, get, fmt in rows:
            values = [get(median(runs[n][mode])) for n in names]
            cells = " | ".join(fmt.format(v) for v in values)
            tail = f" {values[0] / values[1]:.2f}x |" if ratio and values[1] else ""
            print(f"| {label}: {what} | {cells} |{tail}")
        if args.repeat > 1:
            spread = " | ".join(
                f"{runs[n][mode][0].rate:,.0f} – {runs[n][mode][-1].rate:,.0f}" for n in names
            )
            print(
                f"| {label}: msg/s, worst – best of {args.repeat} | {spread} |"
                + (" |" if ratio else "")
            )
    print(
        f"\ncommand: python -m bench.amqp -n {args.count} --duration {args.duration:g} "
        f"--repeat {args.repeat}" + "".join(f" --broker {n}" for n in (args.broker or []))
    )


if __name__ == "__main__":
    main()
