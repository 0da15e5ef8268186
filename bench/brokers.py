"""Starting and stopping the brokers under test as child processes.

Each broker gets a fresh instance directory under ``bench/work/`` (gitignored),
listens on a free 127.0.0.1 port with STOMP over TLS only, and is a direct
child of the benchmark in its own process group.  ``stop()`` (always reached
through ``try/finally``) sends SIGTERM to the group, then SIGKILL; on Linux the
child also gets SIGTERM from the kernel if the benchmark itself dies
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.aio import run_async
from bench.stomp_client import StompConnection, StompError
from bench.sysinfo import free_port
from bench.tls import client_context, write_keystore, write_pem

BENCH_DIR = Path(__file__).resolve().parent
WORK_ROOT = BENCH_DIR / "work"
BENCH_USER = "bench"
BENCH_PASSWORD = "bench"

ACTIVEMQ_HOME = Path("/usr/share/activemq")
ACTIVEMQ_JAR = ACTIVEMQ_HOME / "bin" / "activemq.jar"

# The module-system flags the Debian launcher (/usr/bin/activemq) passes on Java > 8.
_JAVA_MODULE_FLAGS = [
    "--add-reads=java.xml=java.logging",
    "--add-opens=java.base/java.security=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.naming/javax.naming.spi=ALL-UNNAMED",
    "--add-opens=java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.http=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.https=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.www.protocol.jar=ALL-UNNAMED",
    "--add-exports=jdk.xml.dom/org.w3c.dom.html=ALL-UNNAMED",
    "--add-exports=jdk.naming.rmi/com.sun.jndi.url.rmi=ALL-UNNAMED",
]

_PR_SET_PDEATHSIG = 1


class BrokerUnavailable(Exception):
    """The broker is not installed here (nothing was started)."""


class BrokerFailed(Exception):
    """The broker process exited or never became ready."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how a client reaches the broker's STOMP+TLS listener."""

    host: str
    port: int
    cafile: Path
    server_hostname: str
    login: str | None = BENCH_USER
    passcode: str | None = BENCH_PASSWORD
    vhost: str = "localhost"

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.cafile)

    async def connect(self, timeout: float = 10.0) -> StompConnection:
        return await StompConnection.open(
            self.host,
            self.port,
            self.ssl_context(),
            login=self.login,
            passcode=self.passcode,
            vhost=self.vhost,
            server_hostname=self.server_hostname,
            timeout=timeout,
        )


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Broker(ABC):
    """One broker instance: ``start()`` → use ``endpoint``/``pid`` → ``stop()``."""

    name: str

    def __init__(self, instance_dir: Path, server_hostname: str) -> None:
        self.dir = instance_dir
        self.server_hostname = server_hostname
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = instance_dir / "broker.log"
        self._log_file: IO[bytes] | None = None
        self.tls_info = "?"

    # -- subclass hooks ---------------------------------------------------------------
    @abstractmethod
    def check_installed(self) -> None:
        """Raise BrokerUnavailable if the broker cannot be run here."""

    @abstractmethod
    def prepare(self) -> None:
        """Write configuration into ``self.dir`` and choose ``self.port``."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @property
    @abstractmethod
    def cafile(self) -> Path: ...

    def describe(self) -> str:
        return self.name

    def environment(self) -> dict[str, str] | None:
        """Environment for the child (``None``: inherit ours)."""
        return None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, self.cafile, self.server_hostname)

    def start(self, timeout: float = 120.0) -> float:
        """Spawn the broker; return seconds from spawn until a CONNECT got CONNECTED."""
        self.check_installed()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        cmd = self.command()
        log = self.log_path.open("ab")
        self._log_file = log
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig,
        )
        try:
            run_async(self._wait_ready(t0 + timeout))
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - t0

    async def _wait_ready(self, deadline: float) -> None:
        """Poll the port with real STOMP CONNECTs until one succeeds."""
        assert self.proc is not None
        last_error = "no attempt yet"
        while True:
            if self.proc.poll() is not None:
                raise BrokerFailed(
                    f"{self.name} exited with status {self.proc.returncode} before it was "
                    f"ready\n--- {self.log_path} ---\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerFailed(
                    f"{self.name} not ready after the timeout ({last_error})\n"
                    f"--- {self.log_path} ---\n{self.log_tail()}"
                )
            if self.cafile.exists():
                try:
                    conn = await self.endpoint.connect(timeout=min(5.0, remaining))
                except StompError as exc:
                    if "CONNECT refused" in str(exc):
                        raise BrokerFailed(f"{self.name} refused the bench login: {exc}") from exc
                    last_error = str(exc)
                except (OSError, TimeoutError, ssl.SSLError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    self.tls_info = conn.tls_info
                    await conn.disconnect()
                    return
            else:
                last_error = f"{self.cafile} does not exist yet"
            await asyncio.sleep(0.01)

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        elif proc is not None:
            # The leader is gone; make sure nothing else in its group survives.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        log = self._log_file
        self._log_file = None
        if log is not None:
            log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------------
# ActiveMQ 5.17 (Debian package `activemq`)
# ------------------------------------------------------------------------------------------

_ACTIVEMQ_XML = """\
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans
         http://www.springframework.org/schema/beans/spring-beans.xsd
         http://activemq.apache.org/schema/core
         http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- Generated by bench/brokers.py for one benchmark run. -->
  <broker xmlns="http://activemq.apache.org/schema/core"
          brokerName="bench" useJmx="false" persistent="true"
          dataDirectory="{data}">
    <persistenceAdapter>
      <!-- KahaDB defaults: journal fsync on every write batch (journalDiskSyncStrategy=always) -->
      <kahaDB directory="{data}/kahadb"/>
    </persistenceAdapter>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
        <storeUsage><storeUsage limit="8 gb"/></storeUsage>
        <tempUsage><tempUsage limit="2 gb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username="{user}" password="{password}" groups="admins"/>
        </users>
      </simpleAuthenticationPlugin>
    </plugins>
    <sslContext>
      <sslContext keyStore="file:{keystore}" keyStorePassword="{ks_password}"
                  keyStoreType="PKCS12"/>
    </sslContext>
    <transportConnectors>
      <transportConnector name="stomp-ssl" uri="{transport}://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""

# The Debian build ships log4j 1.2 + slf4j-log4j12 (in lib/optional), so the
# log4j2.properties under /etc/activemq is never read: log4j 1.2 wants a
# log4j.properties on the classpath (ACTIVEMQ_CONF is put on it).
_LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.logger.org.apache.activemq.spring=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n
"""


class ActiveMQ(Broker):
    name = "activemq"

    def __init__(
        self,
        instance_dir: Path,
        server_hostname: str,
        *,
        heap: str = "1g",
        transport: str = "stomp+ssl",
    ) -> None:
        super().__init__(instance_dir, server_hostname)
        self.heap = heap
        self.transport = transport
        self.conf = instance_dir / "conf"
        self.data = instance_dir / "data"
        self._cafile = instance_dir / "conf" / "ca.pem"

    @property
    def cafile(self) -> Path:
        return self._cafile

    def describe(self) -> str:
        return f"ActiveMQ {activemq_version()} ({self.transport}, KahaDB, -Xmx{self.heap})"

    def check_installed(self) -> None:
        if not ACTIVEMQ_JAR.exists():
            raise BrokerUnavailable(f"{ACTIVEMQ_JAR} not found: run bench/setup.sh")
        if _java() is None:
            raise BrokerUnavailable("no java on PATH: run bench/setup.sh")

    def prepare(self) -> None:
        for sub in (self.conf, self.data, self.dir / "tmp"):
            sub.mkdir(parents=True, exist_ok=True)
        ks_password = "bench-keystore"
        _, keystore = write_keystore(self.conf, ks_password)
        self.port = free_port()
        (self.conf / "activemq.xml").write_text(
            _ACTIVEMQ_XML.format(
                data=self.data,
                user=BENCH_USER,
                password=BENCH_PASSWORD,
                keystore=keystore,
                ks_password=ks_password,
                transport=self.transport,
                port=self.port,
            )
        )
        (self.conf / "log4j.properties").write_text(_LOG4J_PROPERTIES)

    def command(self) -> list[str]:
        java = _java()
        assert java is not None
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={self.dir / 'tmp'}",
            *_JAVA_MODULE_FLAGS,
            f"-Dactivemq.classpath={self.conf}",
            f"-Dactivemq.home={ACTIVEMQ_HOME}",
            f"-Dactivemq.base={self.dir}",
            f"-Dactivemq.conf={self.conf}",
            f"-Dactivemq.data={self.data}",
            f"-Dlog4j.configuration=file:{self.conf / 'log4j.properties'}",
            "-jar",
            str(ACTIVEMQ_JAR),
            "start",
            f"xbean:file:{self.conf / 'activemq.xml'}",
        ]


def _java() -> str | None:
    return shutil.which("java")


def activemq_version() -> str:
    """The Debian package version, e.g. ``5.17.2+dfsg-2+deb12u1`` (or ``?``)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "activemq"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


# ------------------------------------------------------------------------------------------
# sealmq (this repository's `sealmq serve`)
# ------------------------------------------------------------------------------------------

_SEALMQ_TOML = """\
# Generated by bench/brokers.py for one benchmark run.
data_dir = "{data}"
host = "127.0.0.1"

[listeners]
stomp = {port}
mqtt = false
amqp = false
openwire = false
wss = false
console = false
kms = false

[[users]]
username = "{user}"
password = "{password}"
groups = ["admins"]
"""


def sealmq_executable() -> Path:
    """``sealmq`` next to the running interpreter (i.e. ``.venv/bin/sealmq``)."""
    return Path(sys.executable).parent / "sealmq"


class Sealmq(Broker):
    name = "sealmq"

    def __init__(self, instance_dir: Path, server_hostname: str) -> None:
        super().__init__(instance_dir, server_hostname)
        self.data = instance_dir / "data"
        self.config = instance_dir / "sealmq.toml"

    @property
    def cafile(self) -> Path:
        return self.data / "tls" / "ca.pem"

    def describe(self) -> str:
        return "sealmq (sealmq serve)"

    def check_installed(self) -> None:
        exe = sealmq_executable()
        if not exe.exists():
            raise BrokerUnavailable(f"{exe} not found (run `make install`)")

    def prepare(self) -> None:
        self.port = free_port()
        self.config.write_text(
            _SEALMQ_TOML.format(
                data=self.data, port=self.port, user=BENCH_USER, password=BENCH_PASSWORD
            )
        )

    def command(self) -> list[str]:
        return [str(sealmq_executable()), "serve", "--config", str(self.config)]


# ------------------------------------------------------------------------------------------
# The null broker (client calibration only; see bench/null_broker.py)
# ------------------------------------------------------------------------------------------


class NullBroker(Broker):
    name = "null"

    @property
    def cafile(self) -> Path:
        return self.dir / "ca.pem"

    def describe(self) -> str:
        return "null broker (no storage, calibrates the client)"

    def check_installed(self) -> None:
        pass

    def prepare(self) -> None:
        write_pem(self.dir)
        self.port = free_port()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(BENCH_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        return env

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.null_broker",
            "--port",
            str(self.port),
            "--cert",
            str(self.dir / "server.pem"),
            "--key",
            str(self.dir / "server.key"),
        ]


def make_broker(
    name: str,
    instance_dir: Path,
    *,
    server_hostname: str,
    activemq_heap: str,
    activemq_transport: str,
) -> Broker:
    if name == "activemq":
        return ActiveMQ(
            instance_dir, server_hostname, heap=activemq_heap, transport=activemq_transport
        )
    if name == "sealmq":
        return Sealmq(instance_dir, server_hostname)
    if name == "null":
        return NullBroker(instance_dir, server_hostname)
    raise ValueError(f"unknown broker {name!r}")
