"""Composition root: builds one broker from settings and serves it.

``serve(settings)`` is what ``sealmq serve`` runs; tests call :func:`start`
to get a :class:`RunningBroker` with the ports it bound.

What :func:`start` puts together, in order:

1. the run lock of the data folder (one ``sealmq serve`` per folder);
2. the embedded key service (``[kms] data_dir``, else the data folder), unless
   the broker's key is in an external KMS and no ``kms`` listener is wanted;
3. the broker record: created with its key at the first start, checked against
   the configuration at every later one (``sealmq.control.keys``);
4. the ``kms`` listener (AWS KMS JSON API over HTTPS, same TLS context as the
   other listeners), which keeps serving while the broker waits for its key;
5. the :class:`~sealmq.control.supervisor.Supervisor`, which builds what serves
   clients (store, core, protocol listeners: :class:`_Serving`) from the disk,
   and tears it down and rebuilds it as the key service refuses and answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sealmq.adapters.base import Session
from sealmq.adapters.stomp import StompSession
from sealmq.config import Listener as ConfigListener
from sealmq.config import PolicySettings, Settings
from sealmq.control.admin import RECOVERY_HINT, password_file
from sealmq.control.keys import (
    BrokerKeyError,
    BrokerRecord,
    KeyBackend,
    check_key_access,
    key_failure_code,
    open_backend,
    save_record,
)
from sealmq.control.operations import open_embedded_service, open_file_store
from sealmq.control.requests import REQUEST_SIGNAL, run_pending_requests
from sealmq.control.state import RUNNING, RunLock
from sealmq.control.supervisor import BrokerNotServingError, Supervisor, key_unavailable_reason
from sealmq.control.users import USERS_FILE, load_users
from sealmq.core.authorization import (
    AuthorizationEntry,
    AuthorizationMap,
    TemporaryDestinationEntry,
)
from sealmq.core.broker import Broker
from sealmq.core.limits import LIMIT_KEYS, BrokerLimits, LoginThrottle
from sealmq.core.model import Destination
from sealmq.core.policy import POLICY_FIELDS, DestinationPolicy, PolicyEntry, PolicyMap
from sealmq.core.security import ReloadableAuthenticator
from sealmq.core.virtual import VirtualTopics
from sealmq.kms.files import make_private_dir
from sealmq.kms.service import KeyService
from sealmq.net.driver import Deadlines
from sealmq.net.memory import release_free_memory
from sealmq.net.server import Listener, Listeners, bind_sockets
from sealmq.net.tls import (
    CertPaths,
    ListenerContexts,
    TLSSetupError,
    describe_policy,
    prepare_certificates,
)
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.filestore import FileStore
from sealmq.store.keys import KeyProvider
from sealmq.wire.stomp import Limits

if TYPE_CHECKING:
    # Imported when an MQTT listener or MQTT session needs it: a broker without MQTT does
    # not hold the MQTT codec and adapter in memory (about 3 MiB of an idle broker).
    from sealmq.adapters.mqtt import MqttService
    from sealmq.core.forwarding import Forwards
    from sealmq.kms.server import KmsServer

__all__ = ["BrokerKeyError", "BrokerNotServingError", "RunningBroker", "serve", "start"]

log = logging.getLogger("sealmq")

#: While waiting for its key, the broker checks again at most this often, in seconds
#: (more often when the data-key cache period is shorter).
MAX_RETRY_SECONDS = 30.0


@dataclass(slots=True)
class _Serving:
    """One incarnation of the serving broker: store, core, adapters, client listeners."""

    broker: Broker
    store: FileStore
    listeners: Listeners
    authenticator: ReloadableAuthenticator
    endpoints: dict[str, Listener] = field(default_factory=dict)
    mqtt: MqttService | None = None

    async def stop(self, reason: str) -> None:
        # Late failures of this incarnation's writes concern nobody any more.
        self.broker.on_store_failure = None
        await self.listeners.close(reason)
        if self.mqtt is not None:
            # Session-expiry and delayed-will timers must not fire into a closed core
            # (they resume from the stored state at the next start).
            self.mqtt.close()
        try:
            await self.broker.close()
        finally:
            self.authenticator.close()

    async def rotate_data_keys(self) -> list[int]:
        return await self.store.rotate_data_keys()


class RunningBroker:
    """A started broker: the serving core (when its key answers), listeners, key service."""

    def __init__(
        self,
        settings: Settings,
        record: BrokerRecord,
        supervisor: Supervisor,
        *,
        ca_file: Path | None,
        kms_server: KmsServer | None,
        key_service: KeyService | None,
        backend: KeyBackend,
        run_lock: RunLock,
    ) -> None:
        self.settings = settings
        self.record = record
        self.supervisor = supervisor
        self.ca_file = ca_file
        self.kms_server = kms_server
        self.key_service = key_service
        self.backend = backend
        self.admin_password: str | None = None
        #: Whether this start created ``admin`` (else its password was kept from before).
        self.admin_password_created = False
        self._run_lock = run_lock
        self._closed = False
        #: Answers ``reload-users`` requests (set by :func:`start`).
        self.reload_users: Callable[[], Awaitable[dict[str, object]]] | None = None
        #: The listeners' TLS contexts, following the certificate files (set by :func:`start`).
        self.tls: ListenerContexts | None = None
        self._tls_watch: asyncio.Task[None] | None = None

    def reload_certificates(self) -> bool:
        """Re-read the certificate files now (SIGHUP): new connections get the new
        certificate, established ones keep theirs. A broken pair is refused with a
        logged error and the current certificate stays; returns whether it reloaded."""
        if self.tls is None:
            return False
        try:
            self.tls.reload()
        except TLSSetupError as exc:
            log.error("keeping the current TLS certificate: %s", exc)
            return False
        return True

    @property
    def broker_id(self) -> str:
        return self.record.broker_id

    @property
    def state(self) -> str:
        """Amazon MQ's BrokerState: RUNNING, CRITICAL_ACTION_REQUIRED, ..."""
        return self.supervisor.state

    def _serving(self) -> _Serving:
        serving = self.supervisor.serving
        if not isinstance(serving, _Serving):
            raise BrokerNotServingError(f"the broker is {self.state}, not serving")
        return serving

    @property
    def broker(self) -> Broker:
        return self._serving().broker

    @property
    def listeners(self) -> Listeners:
        return self._serving().listeners

    @property
    def authenticator(self) -> ReloadableAuthenticator:
        return self._serving().authenticator

    @property
    def endpoints(self) -> dict[str, Listener]:
        return self._serving().endpoints

    def port(self, name: str, *, tls: bool = True) -> int:
        kms_tls = self.settings.listener("kms") is not None
        if name == "kms" and self.kms_server is not None and tls == kms_tls:
            return self.kms_server.port
        for listener in self._serving().listeners.listeners:
            if listener.name == name and listener.tls == tls:
                return listener.port
        raise KeyError(name)

    @property
    def kms_endpoint(self) -> str | None:
        """``https://host:port`` of the ``kms`` listener, if it is served."""
        if self.kms_server is None:
            return None
        scheme = "https" if self.settings.listener("kms") is not None else "http"
        return f"{scheme}://{self.settings.url_host()}:{self.kms_server.port}"

    async def rotate_data_keys(self) -> list[int]:
        """New segments under fresh data keys; live records of older ones rewritten, serving."""
        rewritten = await self.supervisor.rotate_data_keys()
        if self.record.rotation_pending:
            self.record = replace(self.record, rotation_pending=False)
            save_record(self.settings.data_dir, self.record)
        return rewritten

    async def handle_requests(self) -> int:
        """Answer the control requests waiting under ``<data_dir>/control``."""

        async def rotate() -> dict[str, object]:
            return {"RewrittenSegments": await self.rotate_data_keys()}

        handlers: dict[str, Callable[[], Awaitable[dict[str, object]]]] = {
            "rotate-data-keys": rotate
        }
        if self.reload_users is not None:
            handlers["reload-users"] = self.reload_users
        return await run_pending_requests(self.settings.data_dir, handlers)

    async def close(self) -> None:
        """Stop accepting, tell clients, flush the store; stop the key service's listener."""
        if self._closed:
            return
        self._closed = True
        if self._tls_watch is not None:
            self._tls_watch.cancel()
        try:
            await self.supervisor.close()
        finally:
            if self.kms_server is not None:
                await self.kms_server.close()
            self.backend.close()
            if self.key_service is not None:
                self.key_service.close()
            self._run_lock.release()


#: Allocations of at least this many bytes (frame buffers, large bodies, their sealed
#: records) get their own mapping, unmapped when freed. glibc's default raises this
#: threshold after each large free (up to 32 MiB) and then serves large buffers from the
#: heap, which it seldom gives back: a broker that once held a few 10 MiB frames stayed
#: 20-30 MB larger.
_MMAP_THRESHOLD_BYTES = 1024 * 1024
#: Free heap above this at the top is returned to the OS (glibc pairs it with the
#: threshold as twice its value).
_TRIM_THRESHOLD_BYTES = 2 * _MMAP_THRESHOLD_BYTES


def _return_large_blocks() -> None:
    """Fix glibc's mmap and trim thresholds, so freed large buffers leave the process."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, _MMAP_THRESHOLD_BYTES)
    mallopt(m_trim_threshold, _TRIM_THRESHOLD_BYTES)


def _private_dir(path: Path) -> Path:
    make_private_dir(path)
    return path


def policy_map(policy: PolicySettings) -> PolicyMap:
    """The core's per-destination policies from ``[policy]`` and ``[[policy.destinations]]``."""
    default = DestinationPolicy(**{name: getattr(policy, name) for name in POLICY_FIELDS})
    entries = []
    for entry in policy.destinations:
        kind, _, name = entry.destination.partition("://")
        pattern = Destination.queue(name) if kind == "queue" else Destination.topic(name)
        entries.append(PolicyEntry(pattern, entry.overrides))
    return PolicyMap(default, entries)


def _forwards(settings: Settings) -> Forwards | None:
    """The core's forwarding rules from ``[[composite_destinations]]`` (checked there)."""
    if not settings.composite_destinations:
        return None
    from sealmq.core.forwarding import Forward, ForwardingRule, Forwards

    def destination(text: str) -> Destination:
        kind, _, name = text.partition("://")
        return Destination.queue(name) if kind == "queue" else Destination.topic(name)

    return Forwards(
        ForwardingRule(
            destination(entry.destination),
            tuple(Forward(destination(name), selector) for name, selector in entry.forward_to),
            entry.forward_only,
        )
        for entry in settings.composite_destinations
    )


def authorization_map(settings: Settings) -> AuthorizationMap | None:
    """The core's authorization map from ``[[authorization]]``; None when there is none."""
    if not settings.authorization:
        return None
    entries = []
    for entry in settings.authorization:
        kind, _, name = entry.destination.partition("://")
        pattern = Destination.queue(name) if kind == "queue" else Destination.topic(name)
        entries.append(AuthorizationEntry(pattern, entry.read, entry.write, entry.admin))
    temporary = settings.security.temporary_destinations
    return AuthorizationMap(
        entries,
        None
        if temporary is None
        else TemporaryDestinationEntry(temporary.read, temporary.write, temporary.admin),
    )


def broker_limits(settings: Settings) -> BrokerLimits:
    """The core's connection, subscription and destination limits from ``[limits]``."""
    return BrokerLimits(**{key: getattr(settings.limits, key) for key in LIMIT_KEYS})


def _log_authorization(authorization: AuthorizationMap | None, *, anonymous: bool) -> None:
    if anonymous:
        # Without a map, anyone who can reach a port may do anything: say so loudly.
        (log.warning if authorization is None else log.info)(
            "anonymous access: on: clients without credentials connect as user 'anonymous' "
            "(group 'anonymous')%s",
            "" if authorization is not None else ", and no [[authorization]] limits them",
        )
    if authorization is None:
        log.info(
            "authorization: no [[authorization]] entries: every authenticated user may read, "
            "write and create every destination"
        )
        return
    temporary = (
        "temporary destinations: every authenticated user"
        if authorization.temporary is None
        else "temporary destinations: [security.temporary_destinations]"
    )
    log.info(
        "authorization: %d [[authorization]] entries; what they do not grant is refused; %s",
        len(authorization.entries),
        temporary,
    )


def _hostnames(settings: Settings) -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if settings.host not in ("0.0.0.0", "::", "") and settings.host not in names:
        names.append(settings.host)
    return names


def _certificates(settings: Settings) -> Callable[[], CertPaths | None]:
    """Start making the local CA and certificate when ``[tls]`` asks for generated ones.

    The child process that makes them runs while the key service opens.
    """
    if not settings.tls.generate:
        return lambda: None
    return prepare_certificates(settings.tls_dir, _hostnames(settings), in_child=True)


def _tls(settings: Settings, generated: CertPaths | None) -> tuple[ListenerContexts, Path | None]:
    ca_file: Path | None = None
    if generated is not None:
        cert, key, ca_file = generated.cert, generated.key, generated.ca
    else:
        assert settings.tls.cert is not None and settings.tls.key is not None
        cert, key = settings.tls.cert, settings.tls.key
    # New handshakes pick up a replaced certificate without a restart.
    tls = ListenerContexts(cert, key)
    if settings.tls.legacy_client_keys:
        log.warning(
            "[tls] ca and require_client_cert are replaced by client_ca and client_auth "
            '("none", "optional", "required"; per listener in [tls.listeners.<name>]); '
            "they still work"
        )
    for item in settings.listeners:
        auth = settings.tls.client_auth_for(item.name)
        if item.tls and auth.mode != "none":
            tls.get(auth.mode, auth.ca)  # a bad CA bundle stops the start, naming it
            log.info("TLS client certificates on %s: %s (CA %s)", item.name, auth.mode, auth.ca)
    return tls, ca_file


def _context(settings: Settings, tls: ListenerContexts, name: str) -> ssl.SSLContext:
    """The TLS context of listener ``name``, with its client-certificate policy."""
    auth = settings.tls.client_auth_for(name)
    return tls.get(auth.mode, auth.ca).context


async def _start_kms_server(
    settings: Settings, service: KeyService, tls: ListenerContexts
) -> KmsServer | None:
    item = settings.listener("kms") or settings.listener("kms", tls=False)
    if item is None:
        return None
    # Imported only with a key service listener: SigV4 checks and the HTTP codec.
    from sealmq.kms.server import KmsServer
    from sealmq.kms.wire import WireHandler

    if not item.tls:
        log.warning("plain-text listener kms on port %d: keys travel NOT encrypted", item.port)
    server = KmsServer(
        WireHandler(service),
        _context(settings, tls, "kms") if item.tls else None,
        request_timeout=settings.limits.login_timeout,
        sockets=bind_sockets(settings.host, item.port),
    )
    await server.start()
    return server


class _ServingFactory:
    """Builds a :class:`_Serving` from the disk; remembers ports so a rebuild binds the same."""

    def __init__(
        self,
        settings: Settings,
        record: BrokerRecord,
        provider: KeyProvider,
        tls: ListenerContexts,
    ) -> None:
        self.settings = settings
        self.record = record
        self.provider = provider
        self.tls = tls
        self.ports: dict[tuple[str, bool], int] = {}
        self.admin_password: str | None = None
        self.admin_password_created = False
        self.supervisor: Supervisor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._authorization_logged = False
        limits = settings.limits
        #: Kept across rebuilds and user reloads: a guesser gains nothing from either.
        self.throttle = LoginThrottle(
            max_failures=limits.max_login_failures, lockout=limits.login_lockout
        )

    async def __call__(self) -> _Serving:
        settings, record = self.settings, self.record
        broker_id = record.broker_id
        had_users = (settings.data_dir / USERS_FILE).exists()
        users, password = load_users(
            settings, self.provider, broker_id, reseal=record.rotation_pending
        )
        authenticator = ReloadableAuthenticator(users, self.throttle)
        if password is not None:
            self.admin_password = password
            self.admin_password_created = not had_users
        try:
            store = open_file_store(settings, self.provider, broker_id)
        except BaseException:
            authenticator.close()
            raise
        virtual = settings.virtual_topics
        authorization = authorization_map(settings)
        if not self._authorization_logged:
            self._authorization_logged = True
            _log_authorization(authorization, anonymous=settings.security.anonymous_access)
        broker = Broker(
            store,
            policies=policy_map(settings.policy),
            broker_id=broker_id,
            virtual_topics=VirtualTopics(virtual.name, virtual.prefix) if virtual.enabled else None,
            advisories=settings.advisories,
            forwards=_forwards(settings),
            authorization=authorization,
            limits=broker_limits(settings),
        )
        try:
            broker.start()
            await broker.ready()
        except BaseException:
            authenticator.close()
            await store.close()
            raise
        abort = settings.policy.slow_consumer_strategy == "abort"
        listeners = Listeners(
            write_buffer_high_water=settings.policy.write_buffer_high_water,
            max_slow_seconds=settings.policy.max_slow_duration_ms / 1000 if abort else None,
        )
        serving = _Serving(broker, store, listeners, authenticator)
        try:
            await self._listen(serving)
        except BaseException:
            await serving.stop("The broker could not start")
            raise
        broker.on_store_failure = self._on_store_failure(serving)
        if record.rotation_pending:
            task = asyncio.create_task(self._rotate_after_migration(serving))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return serving

    async def reload_users(self) -> dict[str, object]:
        """Read the users again (``sealmq user`` changed them): new logins use them."""
        serving = self.supervisor.serving if self.supervisor is not None else None
        if not isinstance(serving, _Serving):
            raise BrokerNotServingError(
                "the broker is not serving: it reads its users when it does"
            )
        users, _ = await asyncio.to_thread(
            load_users, self.settings, self.provider, self.record.broker_id
        )
        serving.authenticator.replace(users)
        log.info("users reloaded: %d users", len(users.records))
        return {"Users": len(users.records)}

    async def _listen(self, serving: _Serving) -> None:
        settings, tls = self.settings, self.tls
        broker, authenticator = serving.broker, serving.authenticator
        limits = Limits(
            max_body=settings.limits.max_frame_body,
            max_header_bytes=settings.limits.max_frame_headers,
            max_connect_frame=settings.limits.max_connect_frame,
        )
        deadlines = Deadlines(
            login=settings.limits.login_timeout, frame_read=settings.limits.frame_read_timeout
        )

        def stomp_session() -> StompSession:
            tls.maybe_reload()
            return StompSession(broker, authenticator, limits)

        factories: dict[str, Callable[[], Session]] = {"stomp": stomp_session}

        def openwire_session() -> Session:
            tls.maybe_reload()
            # Imported with the first OpenWire connection: an idle broker holds none of it.
            from sealmq.adapters.openwire import OpenWireSession

            return OpenWireSession(
                broker, authenticator, max_frame_size=settings.limits.max_frame_body
            )

        factories["openwire"] = openwire_session

        def amqp_session() -> Session:
            tls.maybe_reload()
            # Imported with the first AMQP connection: an idle broker holds no Proton.
            from sealmq.adapters.amqp import AmqpSession

            return AmqpSession(
                broker,
                authenticator,
                anonymous=settings.security.anonymous_access,
                max_message_size=settings.limits.max_frame_body,
            )

        factories["amqp"] = amqp_session
        # MQTT is served on its own listener and over WebSocket; stored MQTT sessions (keys:
        # adapters.mqtt.SESSION_KEY_PREFIX) expire even while neither is configured.
        if any(item.name in ("mqtt", "wss") for item in settings.listeners) or any(
            key.startswith("mqtt:") for key in broker.sessions
        ):
            from sealmq.adapters.mqtt import MqttService

            mqtt = MqttService(
                broker,
                authenticator,
                max_packet_size=settings.limits.mqtt_max_packet_size,
                max_connect_size=settings.limits.max_connect_frame,
                default_prefetch=settings.policy.default_prefetch,
            )
            mqtt.start()
            serving.mqtt = mqtt

            def mqtt_session() -> Session:
                tls.maybe_reload()
                return mqtt.session()

            factories["mqtt"] = mqtt_session
        for item in settings.listeners:
            if item.name == "wss":
                await self._listen_websocket(serving, item, factories, deadlines)
                continue
            factory = factories.get(item.name)
            if factory is None:
                continue
            if not item.tls:
                log.warning(
                    "plain-text listener %s on port %d: traffic on it is NOT encrypted",
                    item.name,
                    item.port,
                )
            port = self.ports.get((item.name, item.tls), item.port)
            listener = await serving.listeners.start(
                item.name,
                settings.host,
                port,
                factory,
                _context(settings, tls, item.name) if item.tls else None,
                deadlines=deadlines,
            )
            self.ports[(item.name, item.tls)] = listener.port
            serving.endpoints[f"{item.name}{'' if item.tls else '+plain'}"] = listener
        skipped = [
            item.name
            for item in settings.listeners
            if item.name not in factories and item.name not in ("kms", "wss") and item.tls
        ]
        if skipped:
            log.info("endpoints not served by this version: %s", ", ".join(skipped))

    async def _listen_websocket(
        self,
        serving: _Serving,
        item: ConfigListener,
        factories: dict[str, Callable[[], Session]],
        deadlines: Deadlines,
    ) -> None:
        """The ``wss`` listener: the same MQTT and STOMP sessions, over WebSocket."""
        settings = self.settings
        if not item.tls:
            log.warning(
                "plain-text listener wss on port %d: traffic on it is NOT encrypted", item.port
            )
        port = self.ports.get((item.name, item.tls), item.port)
        listener = await serving.listeners.start_websocket(
            item.name,
            settings.host,
            port,
            factories,
            _context(settings, self.tls, item.name) if item.tls else None,
            settings.websocket,
            deadlines=deadlines,
            max_connect_frame=settings.limits.max_connect_frame,
        )
        self.ports[(item.name, item.tls)] = listener.port
        serving.endpoints[f"{item.name}{'' if item.tls else '+plain'}"] = listener

    def _on_store_failure(self, serving: _Serving) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            if isinstance(exc, KeyUnavailableError) and self.supervisor is not None:
                # Now, before the failed write's own error reaches its client: every
                # client is told why. The supervisor then stops and rebuilds.
                serving.listeners.stop_accepting()
                serving.listeners.shutdown_sessions(key_unavailable_reason(key_failure_code(exc)))
                self.supervisor.store_failed(exc)
                return
            serving.listeners.stop_accepting()
            serving.listeners.shutdown_sessions("The broker cannot write to its store")

        return failed

    async def _rotate_after_migration(self, serving: _Serving) -> None:
        """A migrated broker moves its data keys under its per-broker key once."""
        try:
            rewritten = await serving.rotate_data_keys()
        except Exception as exc:
            log.warning("rotating the data keys after the migration failed: %s", exc)
            return
        self.record = replace(self.record, rotation_pending=False)
        save_record(self.settings.data_dir, self.record)
        log.info("migrated broker: data keys rotated (%d segments rewritten)", len(rewritten))


async def start(settings: Settings) -> RunningBroker:
    """Open the key service and the broker; serve if its key answers. Returns once bound.

    Raises :class:`BrokerKeyError` when the broker cannot be created with its key
    or the configuration names another key than the one it was created with.
    """
    _return_large_blocks()
    data_dir = _private_dir(settings.data_dir)
    run_lock = RunLock(data_dir)
    service: KeyService | None = None
    kms_server: KmsServer | None = None
    backend: KeyBackend | None = None
    certificates: Callable[[], CertPaths | None] | None = None
    try:
        certificates = _certificates(settings)
        wants_kms = settings.listener("kms") or settings.listener("kms", tls=False)
        if not settings.encryption.external or wants_kms:
            _private_dir(settings.kms_dir)
            service = open_embedded_service(settings)
        backend = open_backend(settings, service)
        record, created = backend.open_broker(data_dir, settings.encryption.kms_key)
        if created:
            log.info("created broker %s with %s", record.broker_id, record.describe())
        provider = backend.provider(record)
        made, certificates = certificates(), None
        tls, ca_file = _tls(settings, made)
        log.info("TLS policy: %s", describe_policy(tls.context))
        if service is not None:
            kms_server = await _start_kms_server(settings, service, tls)
        factory = _ServingFactory(settings, record, provider, tls)
        cache_seconds = settings.encryption.data_key_cache_seconds
        key_text = record.describe()
        checker = backend.checker(record)

        def check_access() -> None:
            check_key_access(checker, record.broker_id, key_text)

        supervisor = Supervisor(
            data_dir=data_dir,
            broker_id=record.broker_id,
            encryption=record.encryption_options(),
            open_serving=factory,
            check_access=check_access,
            check_interval=cache_seconds,
            retry_interval=min(cache_seconds, MAX_RETRY_SECONDS),
        )
        factory.supervisor = supervisor
        running = RunningBroker(
            settings,
            record,
            supervisor,
            ca_file=ca_file,
            kms_server=kms_server,
            key_service=service,
            backend=backend,
            run_lock=run_lock,
        )
        running.reload_users = factory.reload_users
        running.tls = tls
        running._tls_watch = asyncio.create_task(tls.watch())
        await supervisor.start()
        running.admin_password = factory.admin_password
        running.admin_password_created = factory.admin_password_created
    except BaseException:
        if certificates is not None:  # let the child finish its files, then reap it
            with contextlib.suppress(Exception):
                certificates()
        if kms_server is not None:
            await kms_server.close()
        if backend is not None:
            backend.close()
        if service is not None:
            service.close()
        run_lock.release()
        raise
    return running


def _urls(running: RunningBroker) -> str:
    urls = []
    with contextlib.suppress(BrokerNotServingError):
        urls += [listener.url for listener in running.listeners.listeners]
    if running.kms_endpoint is not None:
        urls.append(f"kms+{running.kms_endpoint}")
    return " ".join(urls)


async def serve(settings: Settings, *, shutdown_trigger: Awaitable[object] | None = None) -> None:
    """Run the broker until ``shutdown_trigger`` completes (or forever), then stop cleanly.

    SIGUSR1 makes it answer the control requests waiting in the data folder
    (``sealmq broker rotate-data-keys``), when it runs in the main thread.
    """
    running = await start(settings)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[int]] = set()

    def on_request() -> None:
        task = loop.create_task(running.handle_requests())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_state(state: str) -> None:
        if state == RUNNING:
            # What starting up freed goes back before "ready": whoever waits for
            # that line sees the footprint the broker keeps; what comes after, once idle.
            release_free_memory()
            running.listeners.trim_when_idle()
            log.info("ready: %s", _urls(running))

    def on_hangup() -> None:
        log.info("SIGHUP: reloading the TLS certificate")
        running.reload_certificates()

    handles_signal = False
    try:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(REQUEST_SIGNAL, on_request)
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
            handles_signal = True
        if running.ca_file is not None:
            print(f"Clients trust the broker's certificate authority at: {running.ca_file}")
        if running.admin_password is not None:
            said = (
                "Created user 'admin' with password:"
                if running.admin_password_created
                else "User 'admin' still has its generated password:"
            )
            print(
                f"{said} {running.admin_password}\n(kept in {password_file(settings.data_dir)}"
                ", readable only by you, and printed at every start until configured "
                f"[[users]] replace 'admin')\n{RECOVERY_HINT}",
                flush=True,
            )
        if running.kms_endpoint is not None:
            log.info(
                "key service: %s (AWS_SHARED_CREDENTIALS_FILE=%s)",
                running.kms_endpoint,
                settings.kms_dir / "credentials",
            )
        running.supervisor.on_state = on_state
        if running.state == RUNNING:
            # What starting up freed goes back before "ready": whoever waits for
            # that line sees the footprint the broker keeps; what comes after, once idle.
            release_free_memory()
            running.listeners.trim_when_idle()
            log.info("ready: %s", _urls(running))
        else:
            log.critical(
                "broker %s is %s: %s",
                running.broker_id,
                running.state,
                "; ".join(f"{a.code}: {a.info}" for a in running.supervisor.actions),
            )
        on_request()  # requests sent while the broker was starting
        if shutdown_trigger is None:
            await asyncio.Event().wait()
        else:
            await shutdown_trigger
    finally:
        if handles_signal:
            loop.remove_signal_handler(REQUEST_SIGNAL)
            loop.remove_signal_handler(signal.SIGHUP)
        log.info("shutting down")
        for task in list(tasks):
            task.cancel()
        await running.close()
        log.info("stopped")
