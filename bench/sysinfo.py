"""Reading /proc: process-tree RSS and CPU time, and a description of the machine."""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children = _children_map()
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Sum of VmRSS over the process tree rooted at ``pid``."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) * 1024


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of ``pid`` itself."""
    return _status_kib(pid, "VmHWM") * 1024


def cpu_seconds(pid: int) -> float:
    """User+system CPU time consumed so far by the live process tree rooted at ``pid``."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLK_TCK


@dataclass(frozen=True, slots=True)
class Machine:
    nproc: int
    cpu_model: str
    mem_gib: float
    kernel: str
    python: str

    def describe(self) -> str:
        return (
            f"{self.nproc} cores ({self.cpu_model}), {self.mem_gib:.0f} GiB RAM, "
            f"Linux {self.kernel}, Python {self.python}"
        )


def machine() -> Machine:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = _meminfo_kib("MemTotal") / (1024 * 1024)
    return Machine(
        nproc=len(os.sched_getaffinity(0)),
        cpu_model=model,
        mem_gib=mem_gib,
        kernel=platform.release(),
        python=platform.python_version(),
    )


def _meminfo_kib(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _system_busy_seconds() -> float:
    """CPU time spent busy by all processes, all cores, since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal guest guest_nice
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class BackgroundMeter:
    """CPU used by processes that are neither the broker nor this benchmark.

    Other work on the machine (a test suite, a build) skews every number here;
    this measures how much of it ran during a measurement.
    """

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid
        self._t0 = 0.0
        self._busy0 = self._broker0 = self._own0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _system_busy_seconds()
        self._broker0 = cpu_seconds(self.broker_pid)
        self._own0 = _own_seconds()

    def stop(self) -> float:
        """% of one core used by everything else since ``start()``."""
        wall = time.monotonic() - self._t0
        busy = _system_busy_seconds() - self._busy0
        broker = cpu_seconds(self.broker_pid) - self._broker0
        own = _own_seconds() - self._own0
        return max(0.0, 100 * (busy - broker - own) / wall) if wall > 0 else 0.0
