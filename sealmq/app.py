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
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sealmq.adapters.base import Session
from sealmq.adapters.mqtt import MqttService, MqttSession
from sealmq.adapters.stomp import StompSession
from sealmq.config import Settings
from sealmq.control.keys import (
    BrokerKeyError,
    BrokerRecord,
    KeyBackend,
    check_key_access,
    open_backend,
    save_record,
)
from sealmq.control.operations import open_embedded_service
from sealmq.control.requests import REQUEST_SIGNAL, run_pending_requests
from sealmq.control.state import RUNNING, RunLock
from sealmq.control.supervisor import BrokerNotServingError, Supervisor, key_unavailable_reason
from sealmq.core.broker import Broker, Policy
from sealmq.core.security import Authenticator, UserRecord, generate_password, hash_password
from sealmq.kms.server import KmsServer
from sealmq.kms.service import KeyService
from sealmq.kms.wire import WireHandler
from sealmq.net.server import Listener, Listeners
from sealmq.net.tls import ReloadableContext, ensure_certificates
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.filestore import FileStore
from sealmq.store.keys import KeyProvider
from sealmq.store.sealed import read_sealed, write_sealed
from sealmq.wire.stomp import Limits

__all__ = ["BrokerKeyError", "BrokerNotServingError", "RunningBroker", "serve", "start"]

log = logging.getLogger("sealmq")

USERS_FILE = "users.sealed"
#: While waiting for its key, the broker checks again at most this often, in seconds
#: (more often when the data-key cache period is shorter).
MAX_RETRY_SECONDS = 30.0


@dataclass(slots=True)
class _Serving:
    """One incarnation of the serving broker: store, core, adapters, client listeners."""

    broker: Broker
    store: FileStore
    listeners: Listeners
    authenticator: Authenticator
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
        self._run_lock = run_lock
        self._closed = False

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
    def authenticator(self) -> Authenticator:
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

        return await run_pending_requests(self.settings.data_dir, {"rotate-data-keys": rotate})

    async def close(self) -> None:
        """Stop accepting, tell clients, flush the store; stop the key service's listener."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.supervisor.close()
        finally:
            if self.kms_server is not None:
                await self.kms_server.close()
            self.backend.close()
            if self.key_service is not None:
                self.key_service.close()
            self._run_lock.release()


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _users(
    settings: Settings, keys: KeyProvider, broker_id: str, *, reseal: bool = False
) -> tuple[Authenticator, str | None]:
    """Users from the config, else the sealed user list, else a new admin (password returned).

    ``reseal`` writes the sealed list again under the current key (after a migration).
    """
    if settings.users:
        records = [
            UserRecord(user.username, hash_password(user.password), frozenset(user.groups))
            for user in settings.users
        ]
        return Authenticator(records), None
    path = settings.data_dir / USERS_FILE
    context = {"broker": broker_id, "purpose": "users"}
    if path.exists():
        data = read_sealed(path, keys, context)
        if reseal:
            write_sealed(path, data, keys, context)
        return Authenticator.from_bytes(data), None
    password = generate_password()
    authenticator = Authenticator([UserRecord("admin", hash_password(password), frozenset())])
    write_sealed(path, authenticator.to_bytes(), keys, context)
    return authenticator, password


def _hostnames(settings: Settings) -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if settings.host not in ("0.0.0.0", "::", "") and settings.host not in names:
        names.append(settings.host)
    return names


def _tls(settings: Settings) -> tuple[ReloadableContext, Path | None]:
    ca_file: Path | None = None
    if settings.tls.generate:
        paths = ensure_certificates(settings.tls_dir, _hostnames(settings))
        cert, key, ca_file = paths.cert, paths.key, paths.ca
    else:
        assert settings.tls.cert is not None and settings.tls.key is not None
        cert, key = settings.tls.cert, settings.tls.key
    # New handshakes pick up a replaced certificate without a restart.
    tls = ReloadableContext(
        cert,
        key,
        client_ca=settings.tls.ca,
        require_client_cert=settings.tls.require_client_cert,
    )
    return tls, ca_file


async def _start_kms_server(
    settings: Settings, service: KeyService, tls: ReloadableContext
) -> KmsServer | None:
    item = settings.listener("kms") or settings.listener("kms", tls=False)
    if item is None:
        return None
    if not item.tls:
        log.warning("plain-text listener kms on port %d: keys travel NOT encrypted", item.port)
    server = KmsServer(
        WireHandler(service),
        tls.context if item.tls else None,
        host=settings.host,
        port=item.port,
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
        tls: ReloadableContext,
    ) -> None:
        self.settings = settings
        self.record = record
        self.provider = provider
        self.tls = tls
        self.ports: dict[tuple[str, bool], int] = {}
        self.admin_password: str | None = None
        self.supervisor: Supervisor | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self) -> _Serving:
        settings, record = self.settings, self.record
        broker_id = record.broker_id
        authenticator, password = _users(
            settings, self.provider, broker_id, reseal=record.rotation_pending
        )
        if password is not None:
            self.admin_password = password
        try:
            store = FileStore(
                settings.data_dir,
                self.provider,
                broker_id,
                segment_size=settings.store.segment_size,
                data_key_cache_seconds=settings.encryption.data_key_cache_seconds,
            )
        except BaseException:
            authenticator.close()
            raise
        policy = Policy(
            maximum_redeliveries=settings.policy.maximum_redeliveries,
            dead_letter_queue=settings.policy.dead_letter_queue,
            redelivery_delay_ms=settings.policy.redelivery_delay_ms,
            default_prefetch=settings.policy.default_prefetch,
        )
        broker = Broker(store, policy=policy, broker_id=broker_id)
        try:
            broker.start()
        except BaseException:
            authenticator.close()
            await store.close()
            raise
        listeners = Listeners()
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

    async def _listen(self, serving: _Serving) -> None:
        settings, tls = self.settings, self.tls
        broker, authenticator = serving.broker, serving.authenticator
        limits = Limits(
            max_body=settings.limits.max_frame_body,
            max_header_bytes=settings.limits.max_frame_headers,
        )

        def stomp_session() -> StompSession:
            tls.maybe_reload()
            return StompSession(broker, authenticator, limits)

        mqtt = MqttService(
            broker,
            authenticator,
            max_packet_size=settings.limits.mqtt_max_packet_size,
            default_prefetch=settings.policy.default_prefetch,
        )
        mqtt.start()
        serving.mqtt = mqtt

        def mqtt_session() -> MqttSession:
            tls.maybe_reload()
            return mqtt.session()

        factories: dict[str, Callable[[], Session]] = {
            "stomp": stomp_session,
            "mqtt": mqtt_session,
        }
        context = tls.context
        for item in settings.listeners:
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
                item.name, settings.host, port, factory, context if item.tls else None
            )
            self.ports[(item.name, item.tls)] = listener.port
            serving.endpoints[f"{item.name}{'' if item.tls else '+plain'}"] = listener
        skipped = [
            item.name
            for item in settings.listeners
            if item.name not in factories and item.name != "kms" and item.tls
        ]
        if skipped:
            log.info("endpoints not served by this version: %s", ", ".join(skipped))

    def _on_store_failure(self, serving: _Serving) -> Callable[[BaseException], None]:
        def failed(exc: BaseException) -> None:
            if isinstance(exc, KeyUnavailableError) and self.supervisor is not None:
                # Now, before the failed write's own error reaches its client: every
                # client is told why. The supervisor then stops and rebuilds.
                serving.listeners.stop_accepting()
                serving.listeners.shutdown_sessions(key_unavailable_reason())
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
    data_dir = _private_dir(settings.data_dir)
    run_lock = RunLock(data_dir)
    service: KeyService | None = None
    kms_server: KmsServer | None = None
    backend: KeyBackend | None = None
    try:
        wants_kms = settings.listener("kms") or settings.listener("kms", tls=False)
        if not settings.encryption.external or wants_kms:
            _private_dir(settings.kms_dir)
            service = open_embedded_service(settings)
        backend = open_backend(settings, service)
        record, created = backend.open_broker(data_dir, settings.encryption.kms_key)
        if created:
            log.info("created broker %s with %s", record.broker_id, record.describe())
        provider = backend.provider(record)
        tls, ca_file = _tls(settings)
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
        await supervisor.start()
        running.admin_password = factory.admin_password
    except BaseException:
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
            log.info("ready: %s", _urls(running))

    handles_signal = False
    try:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(REQUEST_SIGNAL, on_request)
            handles_signal = True
        if running.ca_file is not None:
            print(f"Clients trust the broker's certificate authority at: {running.ca_file}")
        if running.admin_password is not None:
            print(
                "Created user 'admin' with password: "
                f"{running.admin_password}\n(shown once; it is stored only as a hash)",
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
        log.info("shutting down")
        for task in list(tasks):
            task.cancel()
        await running.close()
        log.info("stopped")
