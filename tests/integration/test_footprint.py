"""The broker's footprint as ``ps`` shows it: an idle broker stays small.

The aim is 40 MiB on the benchmark's machine, where the libraries the broker stands on
(the interpreter, asyncio, ssl, uvloop, cryptography, argon2) take
:data:`REFERENCE_FLOOR` by themselves. The test measures that floor too, in a process
that imports just them, and holds what sealmq adds to the aim's share
(``IDLE_AIM - REFERENCE_FLOOR``): so the same code passes on a machine whose libraries
map a little more (CI measured the broker 1.6 MiB above this machine), and a growth of
sealmq's own footprint fails everywhere.

What keeps it so: MQTT's codec and adapter are imported only with an MQTT listener (or
stored MQTT sessions), OpenWire's only with the first OpenWire connection; the
certificates are made by a child process, so the broker never loads
``cryptography.x509``; listening sockets are bound without uvloop's resolver threads;
the C heap's free pages are given back once the broker is ready; and ``make test``
compiles the modules ahead (``make bytecode``), as an install does.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealmq.net.memory import TRIM_AFTER_IDLE_SECONDS
from tests.cli.support import KeyBroker, boto_kms
from tests.support import BrokerProcess, ProcessBrokers, stomp_connect, wait_until

MIB = 1024 * 1024
#: The aim the benchmark measures (bench/README.md, "idle"), on a first start as on a
#: restart.
IDLE_AIM = 40 * MIB
#: What :data:`FLOOR` measured on the benchmark's machine (2026-12-03: 30.6-30.8 MiB).
REFERENCE_FLOOR = int(30.7 * MIB)
#: The most sealmq itself may add to its libraries' floor.
OWN_BUDGET = IDLE_AIM - REFERENCE_FLOOR
#: A process holding only what the broker stands on, its freed heap given back.
FLOOR = """
import asyncio, base64, dataclasses, datetime, hashlib, hmac, json, logging, secrets
import argparse, ctypes, ssl, tomllib, uuid
import uvloop, argon2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
ctypes.CDLL(None).malloc_trim(0)
print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
"""


def floor() -> int:
    """The libraries' own RSS on this machine (the lowest of three runs)."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", FLOOR], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        for _ in range(3)
    ]
    return min(int(out) for out in runs) * 1024


def idle(broker: BrokerProcess) -> int:
    """The broker's RSS once it has been idle long enough to give back what it freed
    (it trims :data:`TRIM_AFTER_IDLE_SECONDS` after start-up, as after its last client)."""
    time.sleep(TRIM_AFTER_IDLE_SECONDS + 0.5)  # a time the broker promises: no event
    return broker.rss_bytes()


@pytest.mark.slow
def test_an_idle_broker_stays_small_on_first_start_and_restart(
    processes: ProcessBrokers,
) -> None:
    # OpenWire is on, as by default: its codec and adapter wait for the first client.
    broker = processes.new(openwire=True).start()
    first = idle(broker)
    first_breakdown = _breakdown(broker)
    # The certificates the child made serve TLS clients.
    conn, got = stomp_connect(broker.stomp_port, broker.ca_file)
    conn.disconnect()
    wait_until(got.disconnected.is_set, what="disconnected")
    assert broker.stop() == 0
    broker.start()
    again = idle(broker)
    base = floor()
    for when, rss, breakdown in (
        ("first start", first, first_breakdown),
        ("restart", again, _breakdown(broker)),
    ):
        assert rss - base <= OWN_BUDGET, (
            f"{when}: {rss / MIB:.1f} MiB, {(rss - base) / MIB:.1f} MiB over the libraries' "
            f"{base / MIB:.1f} MiB (budget {OWN_BUDGET / MIB:.1f}); {breakdown}"
        )


def _breakdown(broker: BrokerProcess) -> str:
    """Where the resident memory is, for a failure to say: anonymous and file-backed
    totals, then the largest mappings (KiB)."""
    assert broker.proc is not None
    pid = broker.proc.pid
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    by_mapping: dict[str, int] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields and fields[0] == "Rss:":
            by_mapping[name] = by_mapping.get(name, 0) + int(fields[1])
    largest = sorted(by_mapping.items(), key=lambda item: -item[1])[:8]
    rollup = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    )
    return (
        f"RssAnon {status['RssAnon'].strip()}, RssFile {status['RssFile'].strip()}, "
        f"RssShmem {status['RssShmem'].strip()}, Threads {status['Threads'].strip()}, "
        f"AnonHugePages {rollup.get('AnonHugePages', '?').strip()}, "
        f"FilePmdMapped {rollup.get('FilePmdMapped', '?').strip()}; "
        + ", ".join(f"{Path(name).name} {kib}" for name, kib in largest)
    )


def test_serving_the_key_service_adds_no_threads(tmp_path: Path) -> None:
    """The kms listener is bound like the others: no resolver pool left behind."""
    broker = KeyBroker.make(tmp_path / "broker").start()
    try:
        # The endpoint answers, through the credentials file the broker wrote.
        assert boto_kms(broker).list_aliases()["Aliases"]
        assert broker.process.proc is not None
        status = Path(f"/proc/{broker.process.proc.pid}/status").read_text()
        threads = int(status.split("Threads:")[1].split()[0])
        # The event loop's thread, plus at most the store's writer thread, which its
        # first write starts (the broker record).
        assert threads <= 2, f"{threads} threads"
    finally:
        broker.close()
