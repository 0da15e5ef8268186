"""Starting and stopping the brokers under test as child processes.

Each broker gets a fresh instance directory under ``bench/work/`` (gitignored),
listens on free 127.0.0.1 ports with the protocols asked for (STOMP and/or
MQTT, always over TLS) and nothing else, and is a direct child of the
benchmark in its own process group.  ``stop()`` (always reached
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
from typing import IO, ClassVar

from bench.aio import run_async
from bench.mqtt_client import MqttConnection, MqttError
from bench.stomp_client import StompConnection, StompError
from bench.sysinfo import free_port
from bench.tls import client_context, write_keystore, write_pem
from bench.ws import WebSocketHandshakeError, WsTarget

BENCH_DIR = Path(__file__).resolve().parent
WORK_ROOT = BENCH_DIR / "work"
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password"

STOMP = "stomp"
MQTT = "mqtt"
# STOMP and MQTT over a secure WebSocket (wss://); see bench/ws.py.
WSS_STOMP = "wss-stomp"
WSS_MQTT = "wss-mqtt"
WSS_PROTOCOLS = (WSS_STOMP, WSS_MQTT)
# The subprotocols the WebSocket clients ask for (Sec-WebSocket-Protocol).
WS_SUBPROTOCOLS = {WSS_STOMP: "v12.stomp", WSS_MQTT: "mqtt"}
# AMQP 1.0 over TLS (bench/amqp.py; its client is Node's rhea).
AMQP = "amqp"
_AMQP_SASL_HEADER = b"AMQP\x03\x01\x00\x00"

ACTIVEMQ_HOME = Path("/usr/share/activemq")
ACTIVEMQ_JAR = ACTIVEMQ_HOME / "bin" / "activemq.jar"
# ActiveMQ's MQTT transport (activemq-mqtt.jar, in Debian's libactivemq-java and
# linked into lib/) needs the FuseSource MQTT codec and HawtDispatch, which the
# `activemq` package does not depend on: they come from libmqtt-client-java and
# libhawtdispatch-java, and are linked into the instance's own lib/ (the launcher
# puts ${activemq.base}/lib/*.jar on the classpath).  hawtbuf is in lib/ already.
ACTIVEMQ_MQTT_JAR = ACTIVEMQ_HOME / "lib" / "activemq-mqtt.jar"
ACTIVEMQ_MQTT_DEPS = {
    Path("/usr/share/java/mqtt-client.jar"): "libmqtt-client-java",
    Path("/usr/share/java/hawtdispatch.jar"): "libhawtdispatch-java",
    Path("/usr/share/java/hawtdispatch-transport.jar"): "libhawtdispatch-java",
}

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
    ws: WsTarget | None = None  # STOMP over wss:// at this path, else plain STOMP over TLS

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
            ws=self.ws,
        )


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where and how a client reaches the broker's MQTT+TLS listener."""

    host: str
    port: int
    cafile: Path
    server_hostname: str
    username: str | None = BENCH_USER
    password: str | None = BENCH_PASSWORD
    ws: WsTarget | None = None  # MQTT over wss:// at this path, else plain MQTT over TLS

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.cafile)

    async def connect(
        self,
        client_id: str,
        *,
        clean_session: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> MqttConnection:
        return await MqttConnection.open(
            self.host,
            self.port,
            ssl_context or self.ssl_context(),
            client_id=client_id,
            username=self.username,
            password=self.password,
            clean_session=clean_session,
            server_hostname=self.server_hostname,
            timeout=timeout,
            ws=self.ws,
        )


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Broker(ABC):
    """One broker instance: ``start()`` → use ``endpoint``/``pid`` → ``stop()``.

    ``protocols`` are the listeners this instance opens (each on its own free
    port), in the order readiness is checked.
    """

    name: str
    supports: frozenset[str] = frozenset({STOMP})
    # The WebSocket path of each WSS protocol (sealmq picks by subprotocol, any path).
    ws_paths: ClassVar[dict[str, str]] = {WSS_STOMP: "/stomp", WSS_MQTT: "/mqtt"}
    stomp_vhost = "localhost"

    def __init__(
        self, instance_dir: Path, server_hostname: str, protocols: tuple[str, ...] = (STOMP,)
    ) -> None:
        if not protocols or not set(protocols) <= self.supports:
            raise ValueError(f"{self.name} serves {sorted(self.supports)}, not {protocols}")
        self.dir = instance_dir
        self.server_hostname = server_hostname
        self.protocols = protocols
        self.ports: dict[str, int] = {}
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
        """The STOMP listener."""
        return Endpoint(
            "127.0.0.1",
            self.ports[STOMP],
            self.cafile,
            self.server_hostname,
            vhost=self.stomp_vhost,
        )

    @property
    def mqtt_endpoint(self) -> MqttEndpoint:
        """The MQTT listener."""
        return MqttEndpoint("127.0.0.1", self.ports[MQTT], self.cafile, self.server_hostname)

    def _ws_target(self, protocol: str) -> WsTarget:
        return WsTarget(self.ws_paths[protocol], WS_SUBPROTOCOLS[protocol])

    @property
    def wss_endpoint(self) -> Endpoint:
        """STOMP over the WebSocket listener."""
        return Endpoint(
            "127.0.0.1",
            self.ports[WSS_STOMP],
            self.cafile,
            self.server_hostname,
            vhost=self.stomp_vhost,
            ws=self._ws_target(WSS_STOMP),
        )

    @property
    def wss_mqtt_endpoint(self) -> MqttEndpoint:
        """MQTT over the WebSocket listener."""
        return MqttEndpoint(
            "127.0.0.1",
            self.ports[WSS_MQTT],
            self.cafile,
            self.server_hostname,
            ws=self._ws_target(WSS_MQTT),
        )

    @property
    def where(self) -> str:
        def one(protocol: str) -> str:
            path = self.ws_paths[protocol] if protocol in WSS_PROTOCOLS else ""
            return f"{protocol} 127.0.0.1:{self.ports[protocol]}{path}"

        return ", ".join(one(p) for p in self.protocols)

    def _choose_ports(self) -> None:
        self.ports = {protocol: free_port() for protocol in self.protocols}

    def start(self, timeout: float = 120.0) -> float:
        """Spawn the broker; return seconds from spawn until every listener took a CONNECT."""
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
        """Poll each listener with real CONNECTs (STOMP or MQTT) until one succeeds."""
        for i, protocol in enumerate(self.protocols):
            if protocol == STOMP:
                tls = await self._wait_stomp(deadline, self.endpoint)
            elif protocol == WSS_STOMP:
                tls = await self._wait_stomp(deadline, self.wss_endpoint)
            elif protocol == WSS_MQTT:
                tls = await self._wait_mqtt(deadline, self.wss_mqtt_endpoint)
            elif protocol == AMQP:
                tls = await self._wait_amqp(deadline)
            else:
                tls = await self._wait_mqtt(deadline, self.mqtt_endpoint)
            if i == 0:
                self.tls_info = tls

    def _check_alive(self, deadline: float, last_error: str) -> float:
        """Seconds left before ``deadline``; raises if the broker died or time is up."""
        assert self.proc is not None
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
        return remaining

    async def _wait_mqtt(self, deadline: float, endpoint: MqttEndpoint) -> str:
        last_error = "no attempt yet"
        while True:
            remaining = self._check_alive(deadline, last_error)
            if self.cafile.exists():
                try:
                    conn = await endpoint.connect("bench-ready", timeout=min(5.0, remaining))
                except MqttError as exc:
                    if "CONNECT refused" in str(exc):
                        raise BrokerFailed(f"{self.name} refused the bench login: {exc}") from exc
                    last_error = str(exc)
                except (OSError, TimeoutError, ssl.SSLError, WebSocketHandshakeError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    tls = conn.tls_info
                    await conn.disconnect()
                    return tls
            else:
                last_error = f"{self.cafile} does not exist yet"
            await asyncio.sleep(0.01)

    async def _wait_amqp(self, deadline: float) -> str:
        """Ready once the AMQP listener answers the SASL protocol header with its own."""
        last_error = "no attempt yet"
        while True:
            remaining = self._check_alive(deadline, last_error)
            if self.cafile.exists():
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(
                            "127.0.0.1",
                            self.ports[AMQP],
                            ssl=client_context(self.cafile),
                            server_hostname=self.server_hostname,
                        ),
                        min(5.0, remaining),
                    )
                    try:
                        writer.write(_AMQP_SASL_HEADER)
                        answer = await asyncio.wait_for(reader.readexactly(8), 5.0)
                        tls = str(writer.get_extra_info("ssl_object").version())
                    finally:
                        writer.close()
                except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if answer == _AMQP_SASL_HEADER:
                        return tls
                    last_error = f"answered the SASL header with {answer!r}"
            else:
                last_error = f"{self.cafile} does not exist yet"
            await asyncio.sleep(0.01)

    async def _wait_stomp(self, deadline: float, endpoint: Endpoint) -> str:
        last_error = "no attempt yet"
        while True:
            remaining = self._check_alive(deadline, last_error)
            if self.cafile.exists():
                try:
                    conn = await endpoint.connect(timeout=min(5.0, remaining))
                except StompError as exc:
                    if "CONNECT refused" in str(exc):
                        raise BrokerFailed(f"{self.name} refused the bench login: {exc}") from exc
                    last_error = str(exc)
                except (OSError, TimeoutError, ssl.SSLError, WebSocketHandshakeError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    tls = conn.tls_info
                    await conn.disconnect()
                    return tls
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
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <!-- Only the priority scenario's queues: ordering by priority costs ActiveMQ
               something, and sealmq always orders (ActiveMQ's default is FIFO). -->
          <policyEntry queue="bench.priority.>" prioritizedMessages="true"/>
        </policyEntries>
      </policyMap>
    </destinationPolicy>
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
{connectors}
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
    supports = frozenset({STOMP, MQTT})

    def __init__(
        self,
        instance_dir: Path,
        server_hostname: str,
        protocols: tuple[str, ...] = (STOMP,),
        *,
        heap: str = "1g",
        transport: str = "stomp+ssl",
        mqtt_transport: str = "mqtt+ssl",
    ) -> None:
        super().__init__(instance_dir, server_hostname, protocols)
        self.heap = heap
        self.transports = {STOMP: transport, MQTT: mqtt_transport}
        self.conf = instance_dir / "conf"
        self.data = instance_dir / "data"
        self._cafile = instance_dir / "conf" / "ca.pem"

    @property
    def cafile(self) -> Path:
        return self._cafile

    def describe(self) -> str:
        transports = " + ".join(self.transports[p] for p in self.protocols)
        return f"ActiveMQ {deb_version('activemq')} ({transports}, KahaDB, -Xmx{self.heap})"

    def check_installed(self) -> None:
        if not ACTIVEMQ_JAR.exists():
            raise BrokerUnavailable(f"{ACTIVEMQ_JAR} not found: run bench/setup.sh")
        if _java() is None:
            raise BrokerUnavailable("no java on PATH: run bench/setup.sh")
        if MQTT in self.protocols:
            if not ACTIVEMQ_MQTT_JAR.exists():
                raise BrokerUnavailable(f"{ACTIVEMQ_MQTT_JAR} not found (libactivemq-java)")
            missing = sorted({pkg for jar, pkg in ACTIVEMQ_MQTT_DEPS.items() if not jar.exists()})
            if missing:
                raise BrokerUnavailable(
                    f"ActiveMQ's MQTT transport needs {', '.join(missing)}: run bench/setup.sh"
                )

    def prepare(self) -> None:
        for sub in (self.conf, self.data, self.dir / "tmp"):
            sub.mkdir(parents=True, exist_ok=True)
        ks_password = "bench-keystore"
        _, keystore = write_keystore(self.conf, ks_password)
        self._choose_ports()
        connectors = "\n".join(
            f'      <transportConnector name="{p}-ssl" '
            f'uri="{self.transports[p]}://127.0.0.1:{self.ports[p]}"/>'
            for p in self.protocols
        )
        (self.conf / "activemq.xml").write_text(
            _ACTIVEMQ_XML.format(
                data=self.data,
                user=BENCH_USER,
                password=BENCH_PASSWORD,
                keystore=keystore,
                ks_password=ks_password,
                connectors=connectors,
            )
        )
        (self.conf / "log4j.properties").write_text(_LOG4J_PROPERTIES)
        if MQTT in self.protocols:
            lib = self.dir / "lib"
            lib.mkdir(exist_ok=True)
            for jar in ACTIVEMQ_MQTT_DEPS:
                (lib / jar.name).symlink_to(jar)

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


def deb_version(package: str) -> str:
    """A Debian package's version, e.g. ``5.17.2+dfsg-2+deb12u1`` (or ``?``)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
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
stomp = {stomp}
mqtt = {mqtt}
amqp = {amqp}
openwire = false
wss = {wss}
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
    supports = frozenset({STOMP, MQTT, WSS_STOMP, WSS_MQTT, AMQP})

    def __init__(
        self, instance_dir: Path, server_hostname: str, protocols: tuple[str, ...] = (STOMP,)
    ) -> None:
        super().__init__(instance_dir, server_hostname, protocols)
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

    def _choose_ports(self) -> None:
        super()._choose_ports()
        # One `wss` listener serves both, choosing by the negotiated subprotocol.
        if WSS_STOMP in self.ports and WSS_MQTT in self.ports:
            self.ports[WSS_MQTT] = self.ports[WSS_STOMP]

    def prepare(self) -> None:
        self._choose_ports()
        wss = self.ports.get(WSS_STOMP, self.ports.get(WSS_MQTT, "false"))
        self.config.write_text(
            _SEALMQ_TOML.format(
                data=self.data,
                stomp=self.ports.get(STOMP, "false"),
                mqtt=self.ports.get(MQTT, "false"),
                amqp=self.ports.get(AMQP, "false"),
                wss=wss,
                user=BENCH_USER,
                password=BENCH_PASSWORD,
            )
        )

    def command(self) -> list[str]:
        return [str(sealmq_executable()), "serve", "--config", str(self.config)]


# ------------------------------------------------------------------------------------------
# The null broker (client calibration only; see bench/null_broker.py)
# ------------------------------------------------------------------------------------------


class NullBroker(Broker):
    name = "null"
    supports = frozenset({STOMP, MQTT})

    @property
    def cafile(self) -> Path:
        return self.dir / "ca.pem"

    def describe(self) -> str:
        return "null broker (no storage, calibrates the client)"

    def check_installed(self) -> None:
        pass

    def prepare(self) -> None:
        write_pem(self.dir)
        self._choose_ports()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(BENCH_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        return env

    def command(self) -> list[str]:
        ports: list[str] = []
        for protocol, port in self.ports.items():
            ports += [f"--{protocol}-port", str(port)]
        return [
            sys.executable,
            "-m",
            "bench.null_broker",
            *ports,
            "--cert",
            str(self.dir / "server.pem"),
            "--key",
            str(self.dir / "server.key"),
        ]


# ------------------------------------------------------------------------------------------
# Mosquitto 2 (Debian package `mosquitto`), MQTT only
# ------------------------------------------------------------------------------------------

# Persistence in Mosquitto is an in-memory database written out as a whole
# snapshot every `autosave_interval` seconds (and at shutdown); nothing is
# fsync'ed per message, so a PUBACK does not mean "on disk" as it does for
# sealmq and ActiveMQ.  1800 s is Mosquitto's default, written out to be explicit.
# `max_queued_messages 0` lifts the default cap of 1000 queued QoS 1/2 messages
# per client: beyond it Mosquitto drops them (one "Outgoing messages are being
# dropped" notice in its log; the publisher still gets its PUBACKs), which the
# mqtt-qos1 load hits at once.  The other two brokers queue into their store.
# Everything else is Mosquitto's default, e.g. max_inflight_messages 20 towards
# each subscriber.
_MOSQUITTO_CONF = """\
# Generated by bench/brokers.py for one benchmark run.
per_listener_settings false
{user_line}
persistence true
persistence_location {data}/
persistence_file mosquitto.db
autosave_interval 1800
max_queued_messages 0
allow_anonymous false
password_file {passwd}
log_dest stdout
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S

listener {port} 127.0.0.1
certfile {cert}
keyfile {key}
"""

_SBIN_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"]
)


def _mosquitto_tool(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


class Mosquitto(Broker):
    name = "mosquitto"
    supports = frozenset({MQTT})

    def __init__(
        self, instance_dir: Path, server_hostname: str, protocols: tuple[str, ...] = (MQTT,)
    ) -> None:
        super().__init__(instance_dir, server_hostname, protocols)
        self.conf = instance_dir / "conf"
        self.data = instance_dir / "data"
        self.config = self.conf / "mosquitto.conf"

    @property
    def cafile(self) -> Path:
        return self.conf / "ca.pem"

    def describe(self) -> str:
        return (
            f"Mosquitto {deb_version('mosquitto')} (mqtt TLS listener, persistence: "
            "snapshot every 1800 s, no per-message fsync)"
        )

    def check_installed(self) -> None:
        for tool in ("mosquitto", "mosquitto_passwd"):
            if _mosquitto_tool(tool) is None:
                raise BrokerUnavailable(f"{tool} not found: run bench/setup.sh")

    def prepare(self) -> None:
        for sub in (self.conf, self.data):
            sub.mkdir(parents=True, exist_ok=True)
        _, cert, key = write_pem(self.conf)
        passwd = self.conf / "passwd"
        tool = _mosquitto_tool("mosquitto_passwd")
        assert tool is not None
        subprocess.run(
            [tool, "-c", "-b", str(passwd), BENCH_USER, BENCH_PASSWORD],
            check=True,
            capture_output=True,
            timeout=30,
        )
        passwd.chmod(0o600)
        self._choose_ports()
        # Started as root, Mosquitto switches to user `mosquitto`, which could then
        # read neither the key nor the password file, nor write bench/work.
        user_line = "user root" if os.geteuid() == 0 else ""
        self.config.write_text(
            _MOSQUITTO_CONF.format(
                user_line=user_line,
                data=self.data,
                passwd=passwd,
                port=self.ports[MQTT],
                cert=cert,
                key=key,
            )
        )

    def command(self) -> list[str]:
        exe = _mosquitto_tool("mosquitto")
        assert exe is not None
        return [exe, "-c", str(self.config)]


# ------------------------------------------------------------------------------------------
# RabbitMQ 3 (Debian package `rabbitmq-server`), STOMP and MQTT through its plugins
# ------------------------------------------------------------------------------------------

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")

# The new-style config. No AMQP listener (`listeners.tcp = none`), the STOMP and MQTT
# plugins on TLS listeners only, the `bench` user as the default user (created at first
# start) and allowed from anywhere (`loopback_users = none`; the listeners are on
# 127.0.0.1 anyway). STOMP `/queue/...` destinations are durable queues and a
# `persistent:true` SEND is a persistent message; a SEND's RECEIPT and a QoS 1
# PUBLISH's PUBACK come once RabbitMQ has confirmed the message, i.e. written it to
# its message store and fsync'ed (publisher confirms). An MQTT clean-session-0 QoS 1
# subscription is a durable queue.
_RABBITMQ_CONF = """\
# Generated by bench/brokers.py for one benchmark run.
listeners.tcp = none
loopback_users = none
default_user = {user}
default_pass = {password}
{listeners}
ssl_options.certfile = {cert}
ssl_options.keyfile = {key}
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
mqtt.allow_anonymous = false
log.console = true
log.console.level = info
log.file = false
"""


_RABBITMQ_PLUGINS = {
    STOMP: "rabbitmq_stomp",
    MQTT: "rabbitmq_mqtt",
    WSS_STOMP: "rabbitmq_web_stomp",
    WSS_MQTT: "rabbitmq_web_mqtt",
    AMQP: "rabbitmq_amqp1_0",
}


class RabbitMQ(Broker):
    """RabbitMQ run as its own node: own data folder, config, cookie, and its own epmd.

    The node registers with an ``epmd`` that the benchmark starts on a free port
    (``ERL_EPMD_PORT``; ``-start_epmd false`` so Erlang starts none of its own,
    which would outlive the run), and Erlang distribution listens on 127.0.0.1 on
    another free port. Both processes are the benchmark's children and are
    stopped with it.
    """

    name = "rabbitmq"
    supports = frozenset({STOMP, MQTT, WSS_STOMP, WSS_MQTT, AMQP})
    # rabbitmq_web_stomp's and rabbitmq_web_mqtt's default path.
    ws_paths: ClassVar[dict[str, str]] = {WSS_STOMP: "/ws", WSS_MQTT: "/ws"}
    stomp_vhost = "/"  # RabbitMQ reads the STOMP CONNECT `host` header as the virtual host

    def __init__(
        self, instance_dir: Path, server_hostname: str, protocols: tuple[str, ...] = (STOMP,)
    ) -> None:
        super().__init__(instance_dir, server_hostname, protocols)
        self.conf = instance_dir / "conf"
        self.data = instance_dir / "data"
        self._epmd: subprocess.Popen[bytes] | None = None
        self._epmd_port = 0
        self._dist_port = 0

    @property
    def cafile(self) -> Path:
        return self.conf / "ca.pem"

    def describe(self) -> str:
        plugins = " + ".join(_RABBITMQ_PLUGINS[p] for p in self.protocols)
        return (
            f"RabbitMQ {deb_version('rabbitmq-server')} ({plugins} on TLS listeners, "
            "durable queues, persistent messages confirmed after fsync)"
        )

    def check_installed(self) -> None:
        if not RABBITMQ_SERVER.exists():
            raise BrokerUnavailable(f"{RABBITMQ_SERVER} not found: run bench/setup.sh")
        if shutil.which("epmd") is None:
            raise BrokerUnavailable("no epmd on PATH (erlang-base): run bench/setup.sh")

    def prepare(self) -> None:
        for sub in (self.conf, self.data):
            sub.mkdir(parents=True, exist_ok=True)
        _, cert, key = write_pem(self.conf)
        self._choose_ports()
        self._epmd_port, self._dist_port = free_port(), free_port()
        listeners = []
        # The web plugins depend on rabbitmq_stomp / rabbitmq_mqtt, whose own listeners
        # would open their default plain ports (61613, 1883): none unless asked for.
        plain = {STOMP: STOMP, MQTT: MQTT, WSS_STOMP: STOMP, WSS_MQTT: MQTT}
        for base in sorted({plain[p] for p in self.protocols if p in plain}):
            listeners.append(f"{base}.listeners.tcp = none")
        for protocol in self.protocols:
            port = self.ports[protocol]
            if protocol == AMQP:
                # rabbitmq_amqp1_0 serves AMQP 1.0 on the node's own (0-9-1) listener,
                # telling the two apart by the protocol header.
                listeners.append(f"listeners.ssl.1 = 127.0.0.1:{port}")
                continue
            if protocol in (STOMP, MQTT):
                listeners.append(f"{protocol}.listeners.ssl.1 = 127.0.0.1:{port}")
                continue
            # rabbitmq_web_stomp / rabbitmq_web_mqtt over TLS (cowboy's `ssl` listener).
            # Their plain WebSocket listener cannot be switched off in 3.10: it goes to
            # a free 127.0.0.1 port that nothing uses.
            web = "web_stomp" if protocol == WSS_STOMP else "web_mqtt"
            listeners += [
                f"{web}.tcp.ip = 127.0.0.1",
                f"{web}.tcp.port = {free_port()}",
                f"{web}.ssl.ip = 127.0.0.1",
                f"{web}.ssl.port = {port}",
                f"{web}.ssl.certfile = {cert}",
                f"{web}.ssl.keyfile = {key}",
                f"{web}.ssl.versions.1 = tlsv1.3",
                f"{web}.ssl.versions.2 = tlsv1.2",
            ]
        (self.conf / "rabbitmq.conf").write_text(
            _RABBITMQ_CONF.format(
                user=BENCH_USER,
                password=BENCH_PASSWORD,
                listeners="\n".join(listeners),
                cert=cert,
                key=key,
            )
        )
        plugins = ",".join(_RABBITMQ_PLUGINS[p] for p in self.protocols)
        (self.conf / "enabled_plugins").write_text(f"[{plugins}].\n")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HOME": str(self.dir),  # the Erlang cookie goes here
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_EPMD_PORT": str(self._epmd_port),
                "RABBITMQ_NODENAME": "bench@localhost",
                "RABBITMQ_DIST_PORT": str(self._dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.conf / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.conf / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.conf / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.data / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.data / "log"),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.data / "plugins-expand"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        )
        return env

    def command(self) -> list[str]:
        return [str(RABBITMQ_SERVER)]

    def start(self, timeout: float = 120.0) -> float:
        self.check_installed()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        epmd = shutil.which("epmd")
        assert epmd is not None
        self._epmd = subprocess.Popen(
            [epmd, "-port", str(self._epmd_port), "-address", "127.0.0.1"],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_set_pdeathsig,
        )
        prepare, self.prepare = self.prepare, lambda: None  # type: ignore[method-assign]
        try:
            return super().start(timeout)
        except BaseException:
            self._stop_epmd()
            raise
        finally:
            self.prepare = prepare  # type: ignore[method-assign]

    def stop(self, timeout: float = 20.0) -> None:
        try:
            super().stop(timeout)
        finally:
            self._stop_epmd()

    def _stop_epmd(self) -> None:
        proc, self._epmd = self._epmd, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


BROKER_PROTOCOLS = {
    "activemq": ActiveMQ.supports,
    "rabbitmq": RabbitMQ.supports,
    "sealmq": Sealmq.supports,
    "mosquitto": Mosquitto.supports,
    "null": NullBroker.supports,
}


def make_broker(
    name: str,
    instance_dir: Path,
    protocols: tuple[str, ...],
    *,
    server_hostname: str,
    activemq_heap: str = "1g",
    activemq_transport: str = "stomp+ssl",
    activemq_mqtt_transport: str = "mqtt+ssl",
) -> Broker:
    if name == "activemq":
        return ActiveMQ(
            instance_dir,
            server_hostname,
            protocols,
            heap=activemq_heap,
            transport=activemq_transport,
            mqtt_transport=activemq_mqtt_transport,
        )
    if name == "sealmq":
        return Sealmq(instance_dir, server_hostname, protocols)
    if name == "rabbitmq":
        return RabbitMQ(instance_dir, server_hostname, protocols)
    if name == "mosquitto":
        return Mosquitto(instance_dir, server_hostname, protocols)
    if name == "null":
        return NullBroker(instance_dir, server_hostname, protocols)
    raise ValueError(f"unknown broker {name!r}")
