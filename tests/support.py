"""Shared test support: a broker on free ports, real clients over TLS, bounded waits."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import stomp
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from sealmq.app import RunningBroker, start
from sealmq.config import Listener, SecuritySettings, Settings, UserSettings
from sealmq.net.tls import CertPaths
from sealmq.wire.mqtt import NO_PROPERTIES, Connect, MqttCodec, Packet, Will
from sealmq.wire.mqtt import Connack as MqttConnack
from sealmq.wire.mqtt import Properties as MqttProperties

_P = TypeVar("_P")

#: Every wait in the tests is this many seconds, times SEALMQ_TEST_TIMEOUT_FACTOR
#: (raise it on a slow machine rather than editing tests).
TIMEOUT = 10.0 * float(os.environ.get("SEALMQ_TEST_TIMEOUT_FACTOR", "1"))

USER, PASSWORD = "app", "app-secret-12"

#: Cheap argon2 for test brokers: every start hashes its users and every first login
#: verifies, and the default costs (64 MiB, 3 passes, 4 lanes) took ~0.1 s of both
#: cores each time. Production keeps the defaults; tests of hashing itself use their own.
TEST_SECURITY = SecuritySettings(
    password_hash_time_cost=1, password_hash_memory_kib=64, password_hash_parallelism=1
)
#: The same as ``[security]`` TOML lines, for process brokers' config files.
TEST_SECURITY_TOML = "\n".join(
    [
        "[security]  # cheap password hashing: tests only",
        f"password_hash_time_cost = {TEST_SECURITY.password_hash_time_cost}",
        f"password_hash_memory_kib = {TEST_SECURITY.password_hash_memory_kib}",
        f"password_hash_parallelism = {TEST_SECURITY.password_hash_parallelism}",
    ]
)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test broker: STOMP over TLS on a free port, one known user,
    cheap password hashing (:data:`TEST_SECURITY`)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "listeners": (Listener("stomp", 0),),
        "users": (UserSettings(USER, PASSWORD, frozenset({"admins"})),),
        "security": TEST_SECURITY,
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
    def mqtt_port(self) -> int:
        assert self.running is not None
        return self.running.port("mqtt")

    @property
    def wss_port(self) -> int:
        assert self.running is not None
        return self.running.port("wss")

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
    #: Heart-beats (lone EOLs) received from the broker.
    heartbeats: int = 0

    def on_connected(self, frame: stomp.utils.Frame) -> None:
        self.connected.append(frame)

    def on_heartbeat(self) -> None:
        self.heartbeats += 1

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


#: Every stomp.py connection :func:`stomp_connect` made, for :func:`close_stomp_leftovers`.
_stomp_connections: list[stomp.Connection] = []


#: Every stomp.py transport made in this process (plain and WebSocket), however the
#: test made its connection: see :func:`close_stomp_leftovers`.
_stomp_transports: weakref.WeakSet[Any] = weakref.WeakSet()
_transport_init = stomp.transport.BaseTransport.__init__


def _tracked_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _transport_init(self, *args, **kwargs)
    _stomp_transports.add(self)


stomp.transport.BaseTransport.__init__ = _tracked_init  # type: ignore[method-assign]


def close_stomp_leftovers() -> int:
    """Close the sockets of the stomp.py connections a test left open, so their
    receiver threads end (a test that fails, or one that kills its broker, does not
    disconnect: hundreds of threads left over slowed later tests down). Closing the
    socket, not DISCONNECT: the broker may be gone. How many were still open."""
    _stomp_connections.clear()
    still_open = 0
    for transport in list(_stomp_transports):
        _stomp_transports.discard(transport)
        sock = getattr(transport, "socket", None)
        transport.running = False
        if sock is None:
            continue
        still_open += 1
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the receiver thread's recv
            with contextlib.suppress(OSError):
                sock.close()
        else:  # websocket-client's socket (stomp.py's WSTransport)
            with contextlib.suppress(Exception):
                sock.close()
    return still_open


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
    _stomp_connections.append(conn)
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
    #: The TLS MQTT port the config names; 0 when MQTT is off.
    mqtt_port: int = 0
    #: The TLS OpenWire port the config names; 0 when OpenWire is off.
    openwire_port: int = 0
    #: The TLS AMQP port the config names; 0 when AMQP is off.
    amqp_port: int = 0

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
    mqtt_port: int | None = None,
    openwire_port: int | None = None,
    amqp_port: int | None = None,
    **extra: str,
) -> Path:
    """A TOML config for a process broker: STOMP on ``stomp_port``, everything else off.

    ``mqtt_port`` also serves MQTT over TLS on that port, ``openwire_port`` OpenWire,
    ``amqp_port`` AMQP 1.0.

    ``extra`` are top-level keys (values as TOML text, e.g. ``log_level='"debug"'``);
    ``users`` are (name, password) pairs in group ``admins`` (empty: the broker makes
    its own admin); ``sections`` is TOML text appended at the end (``[limits]`` ...).
    Password hashing is cheap (``[security]`` is :data:`TEST_SECURITY_TOML`).
    """
    lines = [f"data_dir = {str(data_dir)!r}", 'host = "127.0.0.1"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    lines += [
        "[listeners]",
        f"stomp = {stomp_port}",
        f"mqtt = {mqtt_port if mqtt_port is not None else 'false'}",
        f"openwire = {openwire_port if openwire_port is not None else 'false'}",
        f"amqp = {amqp_port if amqp_port is not None else 'false'}",
        *(f"{name} = false" for name in ("wss", "console", "kms")),
    ]
    for username, password in users or ():
        lines += ["[[users]]", f"username = {username!r}", f"password = {password!r}"]
        lines.append('groups = ["admins"]')
    lines.append(TEST_SECURITY_TOML)
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
        mqtt: bool = False,
        openwire: bool = False,
        amqp: bool = False,
        **extra: str,
    ) -> BrokerProcess:
        """A configured, not yet started broker: ``<root>/<name>/{data,sealmq.toml,broker.log}``.

        ``mqtt``: also serve MQTT over TLS (on ``broker.mqtt_port``); ``openwire``:
        OpenWire (on ``broker.openwire_port``); ``amqp``: AMQP 1.0 (``broker.amqp_port``).
        """
        folder = self.root / name
        folder.mkdir(parents=True)
        port = free_port()
        mqtt_port = free_port() if mqtt else None
        openwire_port = free_port() if openwire else None
        amqp_port = free_port() if amqp else None
        config = write_config(
            folder / "sealmq.toml",
            folder / "data",
            port,
            users=users,
            sections=sections,
            mqtt_port=mqtt_port,
            openwire_port=openwire_port,
            amqp_port=amqp_port,
            **extra,
        )
        broker = BrokerProcess(
            config,
            folder / "data",
            folder / "broker.log",
            stomp_port=port,
            mqtt_port=mqtt_port or 0,
            openwire_port=openwire_port or 0,
            amqp_port=amqp_port or 0,
        )
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


# ----------------------------------------------------------------- MQTT


def mqtt_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test broker serving STOMP and MQTT over TLS on free ports."""
    overrides.setdefault("listeners", (Listener("stomp", 0), Listener("mqtt", 0)))
    return make_settings(data_dir, **overrides)


def wss_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test broker serving STOMP, MQTT and WSS (both over WebSocket), TLS."""
    overrides.setdefault(
        "listeners", (Listener("stomp", 0), Listener("mqtt", 0), Listener("wss", 0))
    )
    return make_settings(data_dir, **overrides)


def paho_properties(packet: str, **values: Any) -> PahoProperties:
    """paho Properties for ``packet`` ("CONNECT", "PUBLISH", ...) with paho's field names."""
    props = PahoProperties(getattr(PacketTypes, packet))
    for name, value in values.items():
        setattr(props, name, value)
    return props


@dataclass
class Connack:
    """What a paho client learned from CONNACK."""

    session_present: bool
    reason_code: int
    properties: PahoProperties | None


class PahoClient:
    """A paho-mqtt 2.x client over TLS trusting the broker's CA, with bounded waits.

    ``version`` is 3 (3.1), 4 (3.1.1) or 5; ``websocket_path`` set: MQTT over
    WebSocket (paho's ``transport="websockets"``) on that path. The network loop
    runs in paho's thread; what arrives is queued, and every wait is bounded by
    TIMEOUT. Never reconnects. ``client_cert``: (certificate, key) files to present.
    """

    def __init__(
        self,
        port: int,
        ca_file: Path,
        *,
        version: int = 5,
        client_id: str = "",
        clean: bool = True,
        username: str | None = USER,
        password: str | None = PASSWORD,
        keepalive: int = 60,
        properties: PahoProperties | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        will_properties: PahoProperties | None = None,
        connect: bool = True,
        manual_ack: bool = False,
        websocket_path: str | None = None,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.port = port
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.connect_properties = properties
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if version == 5 else clean,
            protocol=_PAHO_PROTOCOLS[version],
            reconnect_on_failure=False,
            manual_ack=manual_ack,
            transport="websockets" if websocket_path is not None else "tcp",
        )
        if websocket_path is not None:
            self.client.ws_set_options(path=websocket_path)
        cert, key = client_cert if client_cert is not None else (None, None)
        self.client.tls_set(
            ca_certs=str(ca_file),
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain, properties=will_properties)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connack: Connack | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        self.disconnect_properties: PahoProperties | None = None
        self._acks: dict[int, tuple[list[int], PahoProperties | None]] = {}
        self._acked = threading.Condition()
        client = self.client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_ack
        client.on_unsubscribe = self._on_ack
        client.on_publish = self._on_publish
        if connect:
            self.connect()

    # paho callbacks (its network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = Connack(bool(flags.session_present), int(rc.value), props)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnect_reason = int(rc.value)
        self.disconnect_properties = props
        self.disconnected.set()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_ack(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._acked:
            self._acks[mid] = ([int(code.value) for code in codes], props)
            self._acked.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self._on_ack(client, userdata, mid, [rc], props)

    # the test's side

    def connect(self, *, wait: bool = True) -> Connack | None:
        """Open the connection; with ``wait``, return the CONNACK (accepted or not)."""
        self.connected.clear()
        self.disconnected.clear()
        clean_start: Any = self.clean if self.version == 5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        self.client.connect(
            "127.0.0.1",
            self.port,
            keepalive=self.keepalive,
            clean_start=clean_start,
            properties=self.connect_properties,
        )
        self.client.loop_start()
        if not wait:
            return None
        if not self.connected.wait(TIMEOUT):
            raise AssertionError("no CONNACK in time")
        return self.connack

    def _wait_ack(self, mid: int | None) -> tuple[list[int], PahoProperties | None]:
        assert mid is not None
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, TIMEOUT):
                raise AssertionError(f"no acknowledgement for packet {mid} in time")
            return self._acks.pop(mid)

    def subscribe(
        self,
        topic: str,
        qos: int = 0,
        *,
        options: SubscribeOptions | None = None,
        properties: PahoProperties | None = None,
    ) -> list[int]:
        """SUBSCRIBE one filter (``options`` overrides ``qos``); the SUBACK codes."""
        if options is not None:
            result, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.client.subscribe(topic, qos, properties=properties)
        assert result == paho.MQTT_ERR_SUCCESS, result
        return self._wait_ack(mid)[0]

    def subscribe_many(self, filters: list[tuple[str, int]]) -> list[int]:
        result, mid = self.client.subscribe(filters)
        assert result == paho.MQTT_ERR_SUCCESS, result
        return self._wait_ack(mid)[0]

    def unsubscribe(self, *topics: str) -> list[int]:
        result, mid = self.client.unsubscribe(list(topics))
        assert result == paho.MQTT_ERR_SUCCESS, result
        return self._wait_ack(mid)[0]

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        *,
        retain: bool = False,
        properties: PahoProperties | None = None,
    ) -> int:
        """PUBLISH and wait for its flow to complete (PUBACK, PUBCOMP); the reason code."""
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        assert info.rc == paho.MQTT_ERR_SUCCESS, info.rc
        codes, _ = self._wait_ack(info.mid)
        return codes[0]

    def get(self, timeout: float = TIMEOUT) -> paho.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no MQTT message arrived in time") from None

    def take(self, n: int, timeout: float = TIMEOUT) -> list[paho.MQTTMessage]:
        deadline = time.monotonic() + timeout
        return [self.get(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def nothing_more(self, wait: float = 0.3) -> bool:
        """True if no further message arrives within ``wait`` seconds (a bounded negative check)."""
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def wait_disconnected(self, timeout: float = TIMEOUT) -> int | None:
        """Wait until the connection is gone; the DISCONNECT reason code paho reported."""
        if not self.disconnected.wait(timeout):
            raise AssertionError("still connected")
        return self.disconnect_reason

    def disconnect(
        self, reason: int | None = None, properties: PahoProperties | None = None
    ) -> None:
        """A normal DISCONNECT (v5: with ``reason``), then stop paho's thread."""
        code = PahoReasonCode(PacketTypes.DISCONNECT, identifier=reason) if reason else None
        self.client.disconnect(code, properties)
        self.wait_disconnected()
        self.client.loop_stop()

    def drop(self) -> None:
        """Cut the TCP connection without DISCONNECT (an abnormal end: the will is sent)."""
        sock = self.client.socket()
        assert sock is not None
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.wait_disconnected()
        self.client.loop_stop()

    def close(self) -> None:
        """Teardown: stop the thread and the socket, whatever state it is in."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


_PAHO_PROTOCOLS = {3: paho.MQTTv31, 4: paho.MQTTv311, 5: paho.MQTTv5}


class RawMqtt:
    """A TLS socket speaking MQTT through the codec in client mode (or hand-made bytes).

    For flows a library hides: exact packet ids, DUP, resent PUBLISHes, unacknowledged
    deliveries, and input a library would never send.
    """

    def __init__(self, port: int, ca_file: Path, *, level: int = 4, tls: bool = True) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            sock = tls_client_context(ca_file).wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.level = level
        self.codec = MqttCodec(server=False)
        self.codec.protocol_level = level
        self._packets: collections.deque[Packet] = collections.deque()
        self.eof = False

    def send(self, *packets: Packet) -> None:
        for packet in packets:
            self.codec.send(packet)
        self.sock.sendall(b"".join(self.codec.data_to_send()))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(
        self,
        client_id: str = "",
        *,
        clean: bool = True,
        keep_alive: int = 60,
        username: str | None = USER,
        password: str | None = PASSWORD,
        properties: MqttProperties = NO_PROPERTIES,
        will: Will | None = None,
    ) -> MqttConnack:
        """CONNECT and return the CONNACK."""
        self.send(
            Connect(
                self.level,
                clean,
                keep_alive,
                client_id,
                will,
                username,
                password.encode() if password is not None else None,
                properties,
            )
        )
        return self.expect(MqttConnack)

    def _read(self, timeout: float) -> bool:
        """Read once; False on timeout. Sets ``eof`` when the broker closed."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.eof = True
            return True
        self.codec.receive_data(chunk)
        self._packets.extend(self.codec.events_received())
        return True

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        deadline = time.monotonic() + timeout
        while not self._packets:
            if self.eof:
                raise AssertionError("the broker closed the connection")
            if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError("no MQTT packet arrived in time")
        return self._packets.popleft()

    def expect(self, kind: type[_P], timeout: float = TIMEOUT) -> _P:
        packet = self.recv(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet

    def read_until_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Every packet until the broker closes; fails if it stays open past ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError(f"connection still open; got {list(self._packets)!r}")
        packets = list(self._packets)
        self._packets.clear()
        return packets

    def nothing_more(self, wait: float = 0.3) -> bool:
        """True if no packet arrives (and the broker does not close) within ``wait`` seconds."""
        if self._packets:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self._packets and not self.eof:
            self._read(deadline - time.monotonic())
        return not self._packets and not self.eof

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawMqtt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MqttClients:
    """Makes MQTT clients of one broker and closes them all at teardown."""

    def __init__(self, port: int, ca_file: Path) -> None:
        self.port = port
        self.ca_file = ca_file
        self.made: list[PahoClient | RawMqtt] = []

    def paho(self, *, connect: bool = True, **kw: Any) -> PahoClient:
        """A connected paho client (``connect=False`` to connect later); see PahoClient."""
        client = PahoClient(self.port, self.ca_file, connect=False, **kw)
        self.made.append(client)
        if connect:
            client.connect()
        return client

    def raw(self, level: int = 4, *, tls: bool = True) -> RawMqtt:
        client = RawMqtt(self.port, self.ca_file, level=level, tls=tls)
        self.made.append(client)
        return client

    def close_all(self) -> None:
        for client in self.made:
            client.close()


# ----------------------------------------------------------------- client certificates


def mint_client_cert(
    certs: CertPaths,
    folder: Path,
    *,
    subject: Sequence[tuple[str, str]] = (("CN", "client"),),
    dns_names: Sequence[str] = (),
    name: str = "client",
) -> tuple[Path, Path]:
    """A client certificate signed by the local CA in ``certs`` (``<name>.pem``/``.key``).

    ``subject``: its attributes in certificate order, by short name (``C``, ``O``, ``CN``);
    ``dns_names``: subject alternative names of type DNS.
    """
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    oids = {
        "C": NameOID.COUNTRY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }
    ca_cert = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    loaded = serialization.load_pem_private_key(
        (certs.ca.parent / "ca.key").read_bytes(), password=None
    )
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    distinguished = x509.Name([x509.NameAttribute(oids[k], v) for k, v in subject])
    cert = (
        x509.CertificateBuilder()
        .subject_name(distinguished)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if dns_names:
        cert = cert.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns) for dns in dns_names]), critical=False
        )
    signed = cert.sign(loaded, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
