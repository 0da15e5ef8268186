"""Composition root: builds one broker from settings and serves it.

``serve(settings)`` is what ``sealmq serve`` runs; tests call :func:`start`
to get a :class:`RunningBroker` with the ports it bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from sealmq.adapters.stomp import StompSession
from sealmq.config import Settings
from sealmq.core.broker import Broker, Policy
from sealmq.core.security import Authenticator, UserRecord, generate_password, hash_password
from sealmq.kms.local import LocalKeyService
from sealmq.net.server import Listener, Listeners
from sealmq.net.tls import ReloadableContext, ensure_certificates
from sealmq.store.filestore import FileStore
from sealmq.store.keys import KeyProvider
from sealmq.store.sealed import read_sealed, write_sealed
from sealmq.wire.stomp import Limits

__all__ = ["RunningBroker", "serve", "start"]

log = logging.getLogger("sealmq")

#: Endpoints this build can serve; the others in the config are reserved for later.
SERVED_ENDPOINTS = ("stomp",)
USERS_FILE = "users.sealed"
BROKER_ID_FILE = "broker.id"


@dataclass(slots=True)
class RunningBroker:
    """A started broker: its core, its listeners and where its CA lives."""

    settings: Settings
    broker: Broker
    listeners: Listeners
    authenticator: Authenticator
    ca_file: Path | None
    admin_password: str | None = None
    endpoints: dict[str, Listener] = field(default_factory=dict)

    def port(self, name: str, *, tls: bool = True) -> int:
        for listener in self.listeners.listeners:
            if listener.name == name and listener.tls == tls:
                return listener.port
        raise KeyError(name)

    async def close(self) -> None:
        """Stop accepting, tell clients, flush the store."""
        await self.listeners.close()
        await self.broker.close()
        self.authenticator.close()


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _broker_id(data_dir: Path) -> str:
    """The broker's id, made at the first start of its data folder and fixed for its life."""
    path = data_dir / BROKER_ID_FILE
    if path.exists():
        return path.read_text().strip()
    broker_id = f"b-{secrets.token_hex(8)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(broker_id + "\n")
    return broker_id


def _users(
    settings: Settings, keys: KeyProvider, broker_id: str
) -> tuple[Authenticator, str | None]:
    """Users from the config, else the sealed user list, else a new admin (password returned)."""
    if settings.users:
        records = [
            UserRecord(user.username, hash_password(user.password), frozenset(user.groups))
            for user in settings.users
        ]
        return Authenticator(records), None
    path = settings.data_dir / USERS_FILE
    context = {"broker": broker_id, "purpose": "users"}
    if path.exists():
        return Authenticator.from_bytes(read_sealed(path, keys, context)), None
    password = generate_password()
    authenticator = Authenticator([UserRecord("admin", hash_password(password), frozenset())])
    write_sealed(path, authenticator.to_bytes(), keys, context)
    return authenticator, password


def _hostnames(settings: Settings) -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if settings.host not in ("0.0.0.0", "::", "") and settings.host not in names:
        names.append(settings.host)
    return names


async def start(settings: Settings) -> RunningBroker:
    """Open the store, recover, bind every listener; returns once all accept."""
    data_dir = _private_dir(settings.data_dir)
    broker_id = _broker_id(data_dir)
    keys = LocalKeyService(_private_dir(data_dir / "keys"))
    authenticator, admin_password = _users(settings, keys, broker_id)

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
    context = tls.context

    store = FileStore(
        data_dir,
        keys,
        broker_id,
        segment_size=settings.store.segment_size,
        data_key_cache_seconds=settings.encryption.data_key_cache_seconds,
    )
    policy = Policy(
        maximum_redeliveries=settings.policy.maximum_redeliveries,
        dead_letter_queue=settings.policy.dead_letter_queue,
        redelivery_delay_ms=settings.policy.redelivery_delay_ms,
        default_prefetch=settings.policy.default_prefetch,
    )
    broker = Broker(store, policy=policy, broker_id=broker_id)
    broker.start()

    limits = Limits(
        max_body=settings.limits.max_frame_body,
        max_header_bytes=settings.limits.max_frame_headers,
    )
    listeners = Listeners()
    running = RunningBroker(settings, broker, listeners, authenticator, ca_file, admin_password)

    def stomp_session() -> StompSession:
        tls.maybe_reload()
        return StompSession(broker, authenticator, limits)

    factories = {"stomp": stomp_session}
    try:
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
            listener = await listeners.start(
                item.name, settings.host, item.port, factory, context if item.tls else None
            )
            running.endpoints[f"{item.name}{'' if item.tls else '+plain'}"] = listener
    except BaseException:
        await running.close()
        raise

    def store_failed(exc: BaseException) -> None:
        listeners.stop_accepting()
        listeners.shutdown_sessions("The broker cannot write to its store")

    broker.on_store_failure = store_failed
    skipped = [item.name for item in settings.listeners if item.name not in factories and item.tls]
    if skipped:
        log.info("endpoints not served by this version: %s", ", ".join(skipped))
    return running


async def serve(settings: Settings, *, shutdown_trigger: Awaitable[object] | None = None) -> None:
    """Run the broker until ``shutdown_trigger`` completes (or forever), then stop cleanly."""
    running = await start(settings)
    try:
        if running.ca_file is not None:
            print(f"Clients trust the broker's certificate authority at: {running.ca_file}")
        if running.admin_password is not None:
            print(
                "Created user 'admin' with password: "
                f"{running.admin_password}\n(shown once; it is stored only as a hash)",
                flush=True,
            )
        urls = " ".join(listener.url for listener in running.listeners.listeners)
        log.info("ready: %s", urls)
        if shutdown_trigger is None:
            await asyncio.Event().wait()
        else:
            await shutdown_trigger
    finally:
        log.info("shutting down")
        await running.close()
        log.info("stopped")
