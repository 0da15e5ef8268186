"""Shared test support: a broker on free ports, real clients over TLS, bounded waits."""

from __future__ import annotations

import asyncio
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stomp

from sealmq.app import RunningBroker, start
from sealmq.config import Listener, Settings, UserSettings

#: Every wait in the tests is this many seconds, times SEALMQ_TEST_TIMEOUT_FACTOR
#: (raise it on a slow machine rather than editing tests).
TIMEOUT = 10.0 * float(os.environ.get("SEALMQ_TEST_TIMEOUT_FACTOR", "1"))

USER, PASSWORD = "app", "app-secret"


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test broker: STOMP over TLS on a free port, one known user."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "listeners": (Listener("stomp", 0),),
        "users": (UserSettings(USER, PASSWORD, frozenset({"admins"})),),
    }
    values.update(overrides)
    return Settings(**values)


class BrokerThread:
    """A broker started through ``app.start`` on its own event loop in a thread.

    Lets synchronous clients (stomp.py) talk to it over real sockets and TLS.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: RunningBroker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import uvloop

        uvloop.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.running = await start(self.settings)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.running.close()

    def start(self) -> BrokerThread:
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise AssertionError("broker did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the broker's loop and return its result."""
        assert self._loop is not None
        done: queue.Queue[Any] = queue.Queue()

        def run() -> None:
            try:
                done.put((True, fn()))
            except BaseException as exc:
                done.put((False, exc))

        self._loop.call_soon_threadsafe(run)
        ok, value = done.get(timeout=TIMEOUT)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "broker did not stop"

    @property
    def stomp_port(self) -> int:
        assert self.running is not None
        return self.running.port("stomp")

    @property
    def ca_file(self) -> Path:
        return self.settings.tls_dir / "ca.pem"


@dataclass
class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    """Gathers what a stomp.py connection receives, for bounded waits."""

    messages: queue.Queue[stomp.utils.Frame] = field(default_factory=queue.Queue)
    errors: queue.Queue[stomp.utils.Frame] = field(default_factory=queue.Queue)
    receipts: list[str] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    connected: list[stomp.utils.Frame] = field(default_factory=list)

    def on_connected(self, frame: stomp.utils.Frame) -> None:
        self.connected.append(frame)

    def on_message(self, frame: stomp.utils.Frame) -> None:
        self.messages.put(frame)

    def on_error(self, frame: stomp.utils.Frame) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        self.receipts.append(frame.headers["receipt-id"])

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def get(self, timeout: float = TIMEOUT) -> stomp.utils.Frame:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message arrived in time") from None

    def take(self, n: int, timeout: float = TIMEOUT) -> list[stomp.utils.Frame]:
        deadline = time.monotonic() + timeout
        return [self.get(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def nothing_more(self, wait: float = 0.3) -> bool:
        """True if no further message arrives within ``wait`` seconds (a bounded negative check)."""
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def error(self, timeout: float = TIMEOUT) -> stomp.utils.Frame:
        try:
            return self.errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no ERROR frame arrived in time") from None


def stomp_connect(
    port: int,
    ca_file: Path,
    *,
    version: str = "1.2",
    login: str | None = USER,
    passcode: str | None = PASSWORD,
    client_id: str | None = None,
    heartbeats: tuple[int, int] = (0, 0),
    wait: bool = True,
    auto_decode: bool = True,
) -> tuple[stomp.Connection, Collector]:
    """A stomp.py connection over TLS trusting the broker's CA, with a Collector attached."""
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    hosts = [("127.0.0.1", port)]
    kwargs: dict[str, Any] = {"heartbeats": heartbeats} if version != "1.0" else {}
    conn = cls(hosts, auto_content_length=True, auto_decode=auto_decode, **kwargs)
    conn.set_ssl(for_hosts=hosts, ca_certs=str(ca_file), ssl_version=ssl.PROTOCOL_TLS_CLIENT)
    collector = Collector()
    conn.set_listener("collector", collector)
    headers = {"client-id": client_id} if client_id else {}
    conn.connect(login, passcode, wait=wait, headers=headers)
    return conn, collector


def tls_client_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    return context


def sealmq_command(config: Path) -> list[str]:
    """The command line of ``sealmq serve`` with this interpreter and ``config``."""
    return [sys.executable, "-m", "sealmq", "serve", "--config", str(config)]


@dataclass
class BrokerProcess:
    """The broker as a real ``sealmq serve`` process, for restarts and ``kill -9``.

    Its stdout and stderr go to ``log_path`` (appended across restarts); call
    :meth:`close` in a ``finally`` or fixture so a failing test leaves no process.
    """

    config: Path
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    #: Where the current run's output starts in ``log_path``.
    offset: int = 0
    #: The TLS STOMP port the config names (for clients).
    stomp_port: int = 0

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def start(self) -> BrokerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop/kill
        self.offset = offset = self._log.tell()
        self.proc = proc = subprocess.Popen(
            sealmq_command(self.config), stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_until(
            lambda: b"ready: " in self.log_path.read_bytes()[offset:] or proc.poll() is not None,
            what="broker process ready line",
        )
        if proc.poll() is not None:
            self._log.close()
            raise AssertionError(f"broker exited: {self.output()[-2000:]}")
        return self

    def output(self) -> str:
        """Everything every run of this broker printed."""
        return self.log_path.read_text(errors="replace")

    def run_output(self) -> str:
        """What the current (or last) run printed."""
        return self.log_path.read_bytes()[self.offset :].decode(errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of the running process (Linux ``/proc``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(TIMEOUT)
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(TIMEOUT)
        self._log.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs (test teardown); safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        if getattr(self, "_log", None) is not None:
            self._log.close()


def write_config(
    path: Path,
    data_dir: Path,
    stomp_port: int,
    *,
    users: tuple[tuple[str, str], ...] | None = ((USER, PASSWORD),),
    sections: str = "",
    **extra: str,
) -> Path:
    """A TOML config for a process broker: STOMP on ``stomp_port``, everything else off.

    ``extra`` are top-level keys (values as TOML text, e.g. ``log_level='"debug"'``);
    ``users`` are (name, password) pairs in group ``admins`` (empty: the broker makes
    its own admin); ``sections`` is TOML text appended at the end (``[limits]`` ...).
    """
    lines = [f"data_dir = {str(data_dir)!r}", 'host = "127.0.0.1"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    lines += [
        "[listeners]",
        f"stomp = {stomp_port}",
        *(f"{name} = false" for name in ("mqtt", "amqp", "openwire", "wss", "console", "kms")),
    ]
    for username, password in users or ():
        lines += ["[[users]]", f"username = {username!r}", f"password = {password!r}"]
        lines.append('groups = ["admins"]')
    path.write_text("\n".join(lines) + "\n" + sections)
    return path


class ProcessBrokers:
    """Makes process brokers under a test's tmp folder; :meth:`close_all` kills what is left."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[BrokerProcess] = []

    def new(
        self,
        name: str = "broker",
        *,
        users: tuple[tuple[str, str], ...] | None = ((USER, PASSWORD),),
        sections: str = "",
        **extra: str,
    ) -> BrokerProcess:
        """A configured, not yet started broker: ``<root>/<name>/{data,sealmq.toml,broker.log}``."""
        folder = self.root / name
        folder.mkdir(parents=True)
        port = free_port()
        config = write_config(
            folder / "sealmq.toml", folder / "data", port, users=users, sections=sections, **extra
        )
        broker = BrokerProcess(config, folder / "data", folder / "broker.log", stomp_port=port)
        self.made.append(broker)
        return broker

    def close_all(self) -> None:
        for broker in self.made:
            broker.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iter_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path
