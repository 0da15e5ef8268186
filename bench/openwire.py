"""OpenWire over TLS, sealmq next to ActiveMQ 5.17, with ActiveMQ's own JMS client.

``python -m bench.openwire [-n COUNT]`` starts each broker (as ``bench.brokers`` does,
plus an ``ssl://`` OpenWire connector on a free port), runs ``bench/openwire/JmsBench.java``
(a JMS producer and consumer in one JVM, persistent 1 KiB messages on a queue) in three
modes and prints msg/s, end-to-end latency and the broker's CPU per message, with the
sealmq/ActiveMQ ratio:

- ``sync``: each persistent send confirmed before the next (the JMS default);
- ``window``: asynchronous persistent sends under a 1 MB producer window;
- ``paced``: the same at 500 msg/s, for latency.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.brokers import BENCH_PASSWORD, BENCH_USER, ActiveMQ, Broker, Sealmq
from bench.sysinfo import cpu_seconds, free_port

HERE = Path(__file__).parent / "openwire"
CLASSPATH = [
    Path("/usr/share/java") / jar
    for jar in (
        "activemq-client.jar",
        "geronimo-jms_1.1_spec.jar",
        "geronimo-j2ee-management-1.1-spec.jar",
        "hawtbuf.jar",
        "slf4j-api.jar",
        "slf4j-nop.jar",
    )
]
MODES = (("sync", 0.0), ("window", 0.0), ("paced", 500.0))


class _SealmqOpenWire(Sealmq):
    def __init__(self, instance_dir: Path, server_hostname: str, port: int) -> None:
        super().__init__(instance_dir, server_hostname)
        self.openwire_port = port

    def prepare(self) -> None:
        super().prepare()
        text = self.config.read_text()
        self.config.write_text(text.replace("openwire = false", f"openwire = {self.openwire_port}"))


class _ActiveMQOpenWire(ActiveMQ):
    def __init__(self, instance_dir: Path, server_hostname: str, port: int) -> None:
        super().__init__(instance_dir, server_hostname)
        self.openwire_port = port

    def prepare(self) -> None:
        super().prepare()
        xml = self.conf / "activemq.xml"
        connector = (
            f'      <transportConnector name="openwire-ssl" '
            f'uri="ssl://127.0.0.1:{self.openwire_port}"/>\n'
        )
        text = xml.read_text().replace(
            "    </transportConnectors>", connector + "    </transportConnectors>"
        )
        xml.write_text(text)


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_msg: float


def _truststore(ca: Path, out: Path) -> Path:
    subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca),
         "-keystore", str(out), "-storetype", "PKCS12", "-storepass", "changeit"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _run(broker: Broker, port: int, classes: Path, work: Path, count: int) -> dict[str, Result]:
    store = _truststore(broker.cafile, work / f"{broker.name}.p12")
    results = {}
    for mode, rate in MODES:
        n = count if rate == 0 else int(rate * 10)
        before = cpu_seconds(broker.pid)
        done = subprocess.run(
            ["java", f"-Djavax.net.ssl.trustStore={store}",
             "-Djavax.net.ssl.trustStorePassword=changeit", "-Djavax.net.ssl.trustStoreType=PKCS12",
             "-cp", os.pathsep.join(str(p) for p in (classes, *CLASSPATH)), "JmsBench",
             f"ssl://127.0.0.1:{port}", BENCH_USER, BENCH_PASSWORD, mode, str(n), str(n // 2),
             str(rate)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        cpu = cpu_seconds(broker.pid) - before
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{broker.name} {mode}: {done.stdout}{done.stderr[-2000:]}")
        rate_s, p50, p99 = (float(v) for v in line.split()[1:])
        results[mode] = Result(rate_s, p50, p99, cpu * 1e6 / (n + n // 2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=10_000, help="messages per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-openwire-") as tmp:
        work = Path(tmp)
        classes = work / "classes"
        subprocess.run(
            ["javac", "-nowarn", "-d", str(classes), "-cp",
             os.pathsep.join(map(str, CLASSPATH)), str(HERE / "JmsBench.java")],
            check=True,
        )  # fmt: skip
        runs: dict[str, dict[str, Result]] = {}
        for name, make in (("sealmq", _SealmqOpenWire), ("activemq", _ActiveMQOpenWire)):
            port = free_port()
            broker = make(work / name, "localhost", port)
            broker.start()
            try:
                runs[name] = _run(broker, port, classes, work, args.count)
            finally:
                broker.stop()
    print(f"| OpenWire, {args.count} persistent 1 KiB messages | sealmq | ActiveMQ | ratio |")
    print("|---|---|---|---|")
    for mode, _ in MODES:
        s, a = runs["sealmq"][mode], runs["activemq"][mode]
        print(f"| {mode}: msg/s ↑ | {s.rate:,.0f} | {a.rate:,.0f} | {s.rate / a.rate:.2f}x |")
        print(
            f"| {mode}: p50 ms ↓ | {s.p50_ms:.2f} | {a.p50_ms:.2f} | {s.p50_ms / a.p50_ms:.2f}x |"
        )
        print(
            f"| {mode}: p99 ms ↓ | {s.p99_ms:.2f} | {a.p99_ms:.2f} | {s.p99_ms / a.p99_ms:.2f}x |"
        )
        print(
            f"| {mode}: broker CPU µs/msg ↓ | {s.cpu_us_per_msg:.0f} | {a.cpu_us_per_msg:.0f} "
            f"| {s.cpu_us_per_msg / a.cpu_us_per_msg:.2f}x |"
        )


if __name__ == "__main__":
    main()
