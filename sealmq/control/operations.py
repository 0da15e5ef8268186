"""Broker operations the ``sealmq`` command runs beside (or instead of) ``sealmq serve``.

- :func:`broker_status`: the broker's state and key, from ``broker.json``,
  ``status.json`` and the run lock (``STOPPED`` when no process serves it).
- :func:`restore_key_access`: a new grant for the storage principal.
- :func:`rotate_data_keys`: asks the running broker (request file + SIGUSR1),
  or rotates the stopped broker's store itself.
- :func:`delete_broker`: crypto-shreds, then removes the broker's files.

Each opens the embedded key service of the data folder itself: the keystore is
shared safely with a running broker (see :mod:`sealmq.kms.keystore`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sealmq.config import Settings
from sealmq.control.keys import (
    KIND_EXTERNAL,
    BrokerKeyError,
    BrokerRecord,
    KeyBackend,
    has_broker_data,
    load_record,
    open_backend,
    save_record,
)
from sealmq.control.requests import RequestTimeoutError, ask_running_broker
from sealmq.control.state import (
    DELETION_IN_PROGRESS,
    STOPPED,
    RunLock,
    is_running,
    read_status,
    write_status,
)
from sealmq.control.users import Users
from sealmq.kms.service import KeyService, open_key_service
from sealmq.store.filestore import FileStore
from sealmq.store.keys import KeyProvider
from sealmq.store.lock import DataDirLock

__all__ = [
    "KEY_SERVICE_ENTRIES",
    "NoBrokerError",
    "broker_status",
    "delete_broker",
    "open_embedded_service",
    "open_file_store",
    "require_record",
    "restore_key_access",
    "rotate_data_keys",
    "user_command",
]

log = logging.getLogger("sealmq.control")

#: What the embedded key service keeps in its folder (kept when a broker is deleted).
KEY_SERVICE_ENTRIES = ("keys", "audit", "credentials")
#: How long ``sealmq user`` waits for a running broker to reload its users, in seconds.
USER_RELOAD_TIMEOUT_SECONDS = 30.0
#: Default time to wait for a running broker to rotate its data keys, in seconds
#: (``--timeout``). A broker whose asker gave up finishes anyway and logs it.
ROTATION_TIMEOUT_SECONDS = 60.0


class NoBrokerError(Exception):
    """No broker was created in this data folder."""


def open_embedded_service(settings: Settings) -> KeyService:
    """The node's key service (``[kms] data_dir``, else the data folder), created if needed."""
    return open_key_service(
        settings.kms_dir,
        region=settings.kms.region,
        account_id=settings.kms.account_id,
        min_pending_window_days=settings.kms.min_pending_window_days,
        audit_max_bytes=settings.kms.audit_max_bytes,
    )


def require_record(settings: Settings) -> BrokerRecord:
    record = load_record(settings.data_dir)
    if record is not None:
        return record
    if has_broker_data(settings.data_dir):
        raise NoBrokerError(
            f"the broker in {settings.data_dir} predates key choices: start it once with "
            "`sealmq serve` (it is migrated as a broker with the service-owned key)"
        )
    raise NoBrokerError(
        f"no broker has been created in {settings.data_dir} (`sealmq serve` creates it)"
    )


def _backend(settings: Settings) -> tuple[KeyBackend, KeyService | None]:
    service = None if settings.encryption.external else open_embedded_service(settings)
    return open_backend(settings, service), service


def broker_status(settings: Settings) -> dict[str, Any]:
    """What ``sealmq status`` prints: Amazon MQ's DescribeBroker fields that apply."""
    record = require_record(settings)
    running = is_running(settings.data_dir)
    recorded = read_status(settings.data_dir) or {}
    doc: dict[str, Any] = {
        "BrokerId": record.broker_id,
        "BrokerState": recorded.get("BrokerState", STOPPED) if running else STOPPED,
        "ActionsRequired": recorded.get("ActionsRequired", []) if running else [],
        **record.encryption_options(),
        "Created": record.created,
        "DataDir": str(settings.data_dir),
    }
    if running and "Pid" in recorded:
        doc["Pid"] = recorded["Pid"]
    if record.grant_ids:
        doc["GrantIds"] = list(record.grant_ids)
    return doc


def restore_key_access(settings: Settings) -> dict[str, Any]:
    """Grant the storage principal access to the chosen key again (after a revocation)."""
    record = require_record(settings)
    backend, service = _backend(settings)
    try:
        updated, grant_id = backend.restore_access(record)
        save_record(settings.data_dir, updated)
    finally:
        backend.close()
        if service is not None:
            service.close()
    return {
        "BrokerId": record.broker_id,
        "KeyId": record.kms_key_arn,
        "GranteePrincipal": record.storage_principal,
        "GrantId": grant_id,
    }


def open_file_store(settings: Settings, provider: KeyProvider, broker_id: str) -> FileStore:
    """The broker's journal as ``settings`` shape it; the caller recovers or examines it."""
    return FileStore(
        settings.data_dir,
        provider,
        broker_id,
        segment_size=settings.store.segment_size,
        data_key_cache_seconds=settings.encryption.data_key_cache_seconds,
        confirmed_sync_seconds=settings.store.confirmed_sync_seconds,
    )


async def _rotate_offline(
    settings: Settings, backend: KeyBackend, record: BrokerRecord
) -> list[int]:
    provider = backend.provider(record)
    store = open_file_store(settings, provider, record.broker_id)
    try:
        store.recover()
        return await store.rotate_data_keys()
    finally:
        await store.close()
        close = getattr(provider, "close", None)
        if callable(close):
            close()


async def rotate_data_keys(
    settings: Settings,
    *,
    timeout: float = ROTATION_TIMEOUT_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fresh data keys for new segments, live records of older ones rewritten under them.

    A running broker does it itself, serving throughout (waited for at most
    ``timeout`` seconds, ``progress`` told what is waited for); a stopped one is
    rotated here.
    """
    record = require_record(settings)
    if is_running(settings.data_dir):
        doc = await asyncio.to_thread(
            ask_running_broker,
            settings.data_dir,
            "rotate-data-keys",
            timeout=timeout,
            progress=progress,
        )
        if not doc.get("ok"):
            raise BrokerKeyError(f"the broker could not rotate: {doc.get('error')}")
        doc.pop("ok", None)
        return {"BrokerId": record.broker_id, "Online": True, **doc}
    with RunLock(settings.data_dir, what="a broker"):
        backend, service = _backend(settings)
        try:
            rewritten = await _rotate_offline(settings, backend, record)
        finally:
            backend.close()
            if service is not None:
                service.close()
    if record.rotation_pending:
        save_record(settings.data_dir, replace(record, rotation_pending=False))
    return {"BrokerId": record.broker_id, "Online": False, "RewrittenSegments": rewritten}


def _remove_broker_files(data_dir: Path, kms_dir: Path) -> list[str]:
    """Remove the broker's files; keep the key service's if it lives in the data folder."""
    keep: set[str] = set()
    if kms_dir == data_dir:
        keep = set(KEY_SERVICE_ENTRIES)
    elif kms_dir.is_relative_to(data_dir):
        keep = {kms_dir.relative_to(data_dir).parts[0]}
    keep = {name for name in keep if (data_dir / name).exists()}
    # The journal first: it is what must not outlive the broker.
    entries = sorted(data_dir.iterdir(), key=lambda p: (p.name != "journal", p.name))
    for entry in entries:
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            import shutil  # only deletion needs it

            shutil.rmtree(entry)
        else:
            entry.unlink()
    if not keep:
        data_dir.rmdir()
    return sorted(keep)


def delete_broker(settings: Settings) -> dict[str, Any]:
    """Crypto-shred the stopped broker, then remove its files; returns a report.

    The broker's grants are retired and its per-broker key destroyed in the key
    service before any file is removed, so a copy of its journal taken earlier
    cannot be decrypted afterwards, even with the chosen key intact. With an
    external KMS nothing can be destroyed there: the report says so.
    """
    data_dir = settings.data_dir
    record = require_record(settings)
    with RunLock(data_dir, what="the broker"):
        store_lock = DataDirLock(data_dir)
        try:
            write_status(
                data_dir,
                broker_id=record.broker_id,
                state=DELETION_IN_PROGRESS,
                actions=[],
                encryption=record.encryption_options(),
            )
            backend, service = _backend(settings)
            try:
                retired = backend.shred(record)
            finally:
                backend.close()
                if service is not None:
                    service.close()
        finally:
            store_lock.release()
        kept = _remove_broker_files(data_dir, settings.kms_dir)
    report: dict[str, Any] = {
        "BrokerId": record.broker_id,
        "BrokerState": "DELETED",
        "RetiredGrantIds": retired,
        "DestroyedBrokerKeyId": record.broker_key_id,
        "RemovedDataDir": str(data_dir),
    }
    if kept:
        report["KeptKeyService"] = [str(data_dir / name) for name in kept]
    if record.key_kind == KIND_EXTERNAL:
        report["Warning"] = (
            f"The broker's data keys are wrapped directly by {record.kms_key_arn} at "
            f"{record.kms_endpoint}. Deleting the broker removed its files but destroyed no "
            "key material there: a copy of the journal taken earlier stays readable to anyone "
            "who may still use that key. Schedule the key's deletion if nothing else uses it."
        )
    elif record.migrated:
        report["Warning"] = (
            "This broker predates per-broker keys: copies of its journal taken before its "
            "first rotation under the per-broker key stay readable with the service-owned key."
        )
    log.info("deleted broker %s", record.broker_id)
    return report


def user_command(
    settings: Settings,
    change: Callable[[Users], Any],
    *,
    reload: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Run ``change`` on the data folder's managed users (``sealmq user ...``); then,
    with ``reload``, a running broker is asked to read them again, so that new
    connections use them at once. ``Applied`` in a dict result says when they apply.
    """
    record = require_record(settings)
    backend, service = _backend(settings)
    try:
        provider = backend.provider(record)
        try:
            result = change(Users(settings, provider, record.broker_id))
        finally:
            close = getattr(provider, "close", None)
            if callable(close):
                close()
    finally:
        backend.close()
        if service is not None:
            service.close()
    if not reload or not isinstance(result, dict):
        return result
    applied = "at the next start"
    if is_running(settings.data_dir):
        try:
            doc = ask_running_broker(
                settings.data_dir,
                "reload-users",
                timeout=USER_RELOAD_TIMEOUT_SECONDS,
                progress=progress,
            )
        except (RequestTimeoutError, OSError) as exc:
            applied = f"at the next start or reload (the broker did not reload: {exc})"
        else:
            applied = (
                "now, for new connections"
                if doc.get("ok")
                else f"when the broker serves again ({doc.get('error')})"
            )
    return {**result, "Applied": applied}
