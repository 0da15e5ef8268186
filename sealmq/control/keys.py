"""The broker's key: chosen at creation, used through a grant, shredded at deletion.

Key hierarchy with the embedded key service::

    chosen key     service-owned, alias/aws/mq (service-managed) or a customer key;
      |            fixed when the broker is created (as in Amazon MQ)
    per-broker key 256 random bits held *inside* the key service, wrapped by the
      |            chosen key (``KeyService.create_broker_key``); one per broker
    data keys      one per journal segment and per sealed file, wrapped by the
      |            per-broker key; only the wrapped form is on disk
    records        AES-256-GCM

The broker's storage principal, ``arn:aws:iam::<account>:role/sealmq-storage/<broker-id>``,
uses the chosen key only through a grant made for it at creation (Encrypt,
Decrypt, GenerateDataKey, with the encryption-context constraint
``{"broker": <broker-id>}``), and every use of the per-broker key is authorized
as a use of the chosen key by that principal. So revoking the grant, disabling
the chosen key or scheduling its deletion stops the broker at its next call (at
most one data-key cache period later). The service-owned key is the service's
own, as an AWS owned key is: it takes no grants, and nobody can revoke it.

Deleting the broker retires its grants and destroys the per-broker key in the
key service: every data key wrapped by it, in any copy of the journal, is then
unreadable even while the chosen key lives on.

With an external KMS (``kms_endpoint``: AWS KMS or another sealmq), data keys are
wrapped by the chosen key directly, under the access the configured credentials
have (key policy, IAM, grants made outside sealmq); AWS KMS has no per-broker key
to destroy, so deletion cannot shred: a copy of the journal stays readable to
anyone who may still use the chosen key.

``<data_dir>/broker.json`` (0600) records what creation chose: broker id, kind
and id of the chosen key, the per-broker key's id, the storage principal, the
grants made. It holds key ids and names only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealmq.config import MANAGED_KEY, OWNED_KEY, Settings
from sealmq.control.state import (
    ACTION_INVALID_KMS_KEY,
    ACTION_KMS_UNREACHABLE,
    write_json_private,
)
from sealmq.kms.clients import RemoteKeyProvider, ServiceKeyProvider
from sealmq.kms.errors import KmsError
from sealmq.kms.service import SERVICE_MANAGED_ALIAS, Caller, KeyService
from sealmq.store.keys import KeyProvider

__all__ = [
    "BROKER_CONTEXT_KEY",
    "GRANT_OPERATIONS",
    "KIND_CUSTOMER",
    "KIND_EXTERNAL",
    "KIND_MANAGED",
    "KIND_OWNED",
    "RECORD_FILE",
    "BrokerKeyError",
    "BrokerRecord",
    "EmbeddedKeys",
    "ExternalKeys",
    "KeyAccessError",
    "KeyBackend",
    "check_key_access",
    "has_broker_data",
    "key_failure_code",
    "load_record",
    "new_broker_id",
    "save_record",
    "storage_principal",
]

log = logging.getLogger("sealmq.control")

RECORD_FILE = "broker.json"
#: The broker id file of data folders made before broker.json existed.
LEGACY_ID_FILE = "broker.id"
#: What the storage principal's grant allows: all the store ever asks for.
GRANT_OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey")
#: The encryption-context key every data key of the broker carries (the journal's
#: and the sealed files' contexts), and that its grant is constrained to.
BROKER_CONTEXT_KEY = "broker"
#: IAM path of the storage principals' role names.
STORAGE_ROLE_PATH = "sealmq-storage"

KIND_MANAGED = "managed"
KIND_OWNED = "owned"
KIND_CUSTOMER = "customer"
KIND_EXTERNAL = "external"

#: The key check's requests to an external key service: one attempt each (the check
#: retries on its own, :func:`check_key_access`), connected within this many seconds
#: and answered within :data:`CHECK_READ_TIMEOUT`; so a service that hangs is given
#: up on within 3 x (2 + 5) + 1.5 seconds, not botocore's 3 x 3 x (5 + 10).
CHECK_CONNECT_TIMEOUT = 2.0
#: Seconds for an external key service to answer one request of the key check (AWS
#: KMS answers GenerateDataKey and Decrypt in milliseconds).
CHECK_READ_TIMEOUT = 5.0

#: KMS errors worth retrying within the budget (the service's own faults, throttling).
_TRANSIENT_CODES = frozenset({"KMSInternalException", "ThrottlingException", "DependencyTimeout"})


class BrokerKeyError(Exception):
    """The broker cannot be created, started or changed with this key; the message says why."""


class KeyAccessError(Exception):
    """The broker's key is unusable now: ``code`` is the action-required code."""

    def __init__(self, code: str, info: str) -> None:
        super().__init__(info)
        self.code = code
        self.info = info


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    """What was chosen when the broker was created; fixed for its life."""

    broker_id: str
    #: ``managed``, ``owned``, ``customer`` (embedded key service) or ``external``.
    key_kind: str
    #: The chosen key's id (the service-owned key's id for ``owned``).
    kms_key_id: str
    #: The chosen key's ARN (also for ``owned``, though it is visible to nobody).
    kms_key_arn: str
    #: The per-broker key (embedded key service only).
    broker_key_id: str | None
    storage_principal: str
    #: Grants made for the storage principal, oldest first (creation, then restores).
    grant_ids: tuple[str, ...] = ()
    kms_endpoint: str | None = None
    created: str = ""
    #: A data folder from before the key service (its data keys are wrapped by the
    #: service-owned key directly until they are rotated).
    migrated: bool = False
    #: Migrated, and its older data keys have not been rotated yet.
    rotation_pending: bool = False
    #: The key as the configuration named it at creation (for messages).
    named_as: str = ""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["grant_ids"] = list(self.grant_ids)
        doc["format"] = 1
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> BrokerRecord:
        return cls(
            broker_id=str(doc["broker_id"]),
            key_kind=str(doc["key_kind"]),
            kms_key_id=str(doc["kms_key_id"]),
            kms_key_arn=str(doc["kms_key_arn"]),
            broker_key_id=doc.get("broker_key_id"),
            storage_principal=str(doc["storage_principal"]),
            grant_ids=tuple(str(g) for g in doc.get("grant_ids", ())),
            kms_endpoint=doc.get("kms_endpoint"),
            created=str(doc.get("created", "")),
            migrated=bool(doc.get("migrated", False)),
            rotation_pending=bool(doc.get("rotation_pending", False)),
            named_as=str(doc.get("named_as", "")),
        )

    def describe(self) -> str:
        """The chosen key in words, for messages."""
        if self.key_kind == KIND_OWNED:
            return 'the service-owned key (kms_key = "owned")'
        if self.key_kind == KIND_MANAGED:
            return (
                f"the service-managed key {SERVICE_MANAGED_ALIAS} "
                f'({self.kms_key_arn}; kms_key = "managed")'
            )
        where = f" at {self.kms_endpoint}" if self.kms_endpoint else ""
        return f"the customer managed key {self.kms_key_arn}{where}"

    def encryption_options(self) -> dict[str, Any]:
        """Amazon MQ's ``EncryptionOptions`` plus this broker's key details."""
        options: dict[str, Any] = {"UseAwsOwnedKey": self.key_kind == KIND_OWNED}
        if self.key_kind != KIND_OWNED:
            options["KmsKeyId"] = self.kms_key_arn
        return {
            "EncryptionOptions": options,
            "KeyKind": self.key_kind,
            "BrokerKeyId": self.broker_key_id,
            "StoragePrincipal": self.storage_principal,
            "KmsEndpoint": self.kms_endpoint,
        }


def new_broker_id() -> str:
    return f"b-{secrets.token_hex(8)}"


def storage_principal(account_id: str, broker_id: str) -> str:
    """The principal the broker's store calls the key service as."""
    return f"arn:aws:iam::{account_id}:role/{STORAGE_ROLE_PATH}/{broker_id}"


def load_record(data_dir: Path) -> BrokerRecord | None:
    """The broker created in ``data_dir``, or None if none was."""
    path = Path(data_dir) / RECORD_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BrokerKeyError(f"{path} is unreadable: {exc}") from exc
    try:
        return BrokerRecord.from_doc(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokerKeyError(f"{path} is malformed") from exc


def save_record(data_dir: Path, record: BrokerRecord) -> None:
    write_json_private(Path(data_dir) / RECORD_FILE, record.to_doc())


def has_broker_data(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a broker made before ``broker.json`` existed."""
    data_dir = Path(data_dir)
    if (data_dir / LEGACY_ID_FILE).exists() or (data_dir / "users.sealed").exists():
        return True
    journal = data_dir / "journal"
    return journal.is_dir() and any(journal.glob("*.seg"))


def _legacy_broker_id(data_dir: Path) -> str | None:
    try:
        text = (Path(data_dir) / LEGACY_ID_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_alias(ref: str) -> bool:
    return ref.startswith("alias/") or (ref.startswith("arn:") and ":alias/" in ref)


def _is_managed_alias(ref: str) -> bool:
    return ref == SERVICE_MANAGED_ALIAS or ref.endswith(":" + SERVICE_MANAGED_ALIAS)


class KeyBackend(ABC):
    """Creating, checking, reaching and shredding a broker's key in one key service."""

    @abstractmethod
    def create(self, data_dir: Path, kms_key: str | None) -> BrokerRecord:
        """Create the broker of ``data_dir`` with the key ``kms_key`` names."""

    @abstractmethod
    def verify(self, record: BrokerRecord, kms_key: str | None) -> None:
        """Refuse (:class:`BrokerKeyError`) a configuration naming another key."""

    @abstractmethod
    def provider(self, record: BrokerRecord) -> KeyProvider:
        """The store's key provider, calling as the broker's storage principal."""

    def checker(self, record: BrokerRecord) -> KeyProvider:
        """The provider :func:`check_key_access` proves access with: the store's by default.

        Each of its calls must be bounded in time, for the check's retry budget to be.
        """
        return self.provider(record)

    @abstractmethod
    def restore_access(self, record: BrokerRecord) -> tuple[BrokerRecord, str]:
        """A new grant for the storage principal: the updated record and the grant id."""

    @abstractmethod
    def shred(self, record: BrokerRecord) -> list[str]:
        """Retire the broker's grants, destroy its per-broker key; the grants retired."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the backend holds (clients); the key service is closed by its owner."""

    def open_broker(self, data_dir: Path, kms_key: str | None) -> tuple[BrokerRecord, bool]:
        """The broker of ``data_dir``: created now (True) or as it was created (False).

        Raises :class:`BrokerKeyError` when creation fails or the configuration
        names another key than the broker's.
        """
        record = load_record(data_dir)
        if record is not None:
            self.verify(record, kms_key)
            return record, False
        record = self.create(data_dir, kms_key)
        save_record(data_dir, record)
        return record, True


def _mismatch(record: BrokerRecord, named: str, why: str = "") -> BrokerKeyError:
    return BrokerKeyError(
        f"encryption.kms_key = {named!r} {why or 'names another key'}, but broker "
        f"{record.broker_id} was created with {record.describe()}. A broker's key is fixed "
        "when it is created (as in Amazon MQ): remove kms_key from the configuration, set it "
        "back, or create a new broker in another data folder."
    )


class EmbeddedKeys(KeyBackend):
    """The broker's key in the in-process :class:`KeyService` of this node."""

    def __init__(self, service: KeyService) -> None:
        self.service = service

    # -- creation ---------------------------------------------------------------------

    def _admin(self) -> Caller:
        # Amazon MQ makes the grant on the creator's behalf: the admin through the service.
        return self.service.service_caller()

    def _storage_caller(self, principal: str) -> Caller:
        # Not through the service: the managed key then needs the grant too.
        return Caller(principal, internal=True)

    def _describe(self, ref: str) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = self.service.call("DescribeKey", {"KeyId": ref}, self._admin())[
                "KeyMetadata"
            ]
        except KmsError as exc:
            raise BrokerKeyError(
                f"KMS key {ref!r} cannot be used: {exc.code}: {exc.message}"
            ) from None
        return meta

    def _resolve(self, kms_key: str | None) -> tuple[str, str, str]:
        """``(kind, key id, key ARN)`` of the key ``kms_key`` names."""
        if kms_key is None or kms_key == MANAGED_KEY or _is_managed_alias(kms_key):
            meta = self.service.service_managed_key()
            return KIND_MANAGED, str(meta["KeyId"]), str(meta["Arn"])
        if kms_key == OWNED_KEY:
            key_id = self.service.service_owned_key_id
            return KIND_OWNED, key_id, self.service.keystore.key_arn(key_id)
        meta = self._describe(kms_key)
        if meta.get("KeyManager") != "CUSTOMER":
            kind = KIND_MANAGED if meta.get("KeyId") == self._managed_id() else "AWS"
            if kind != KIND_MANAGED:
                raise BrokerKeyError(f"KMS key {kms_key!r} is not a customer managed key")
            return KIND_MANAGED, str(meta["KeyId"]), str(meta["Arn"])
        state = meta.get("KeyState")
        if state == "Disabled":
            raise BrokerKeyError(
                f"KMS key {meta['Arn']} is disabled: enable it (sealmq kms enable-key) first"
            )
        if state == "PendingDeletion":
            raise BrokerKeyError(
                f"KMS key {meta['Arn']} is pending deletion: cancel the deletion and enable it"
            )
        return KIND_CUSTOMER, str(meta["KeyId"]), str(meta["Arn"])

    def _managed_id(self) -> str | None:
        alias = self.service.keystore.aliases.get(SERVICE_MANAGED_ALIAS)
        return None if alias is None else alias.key_id

    def _grant(self, key_id: str, broker_id: str, principal: str) -> str:
        request = {
            "KeyId": key_id,
            "GranteePrincipal": principal,
            "RetiringPrincipal": self.service.admin_principal,
            "Operations": list(GRANT_OPERATIONS),
            "Constraints": {"EncryptionContextSubset": {BROKER_CONTEXT_KEY: broker_id}},
        }
        try:
            response = self.service.call("CreateGrant", request, self._admin())
        except KmsError as exc:
            raise BrokerKeyError(
                f"cannot create a grant on KMS key {self.service.keystore.key_arn(key_id)} for "
                f"the broker's storage principal: {exc.code}: {exc.message}"
            ) from None
        return str(response["GrantId"])

    def create(self, data_dir: Path, kms_key: str | None) -> BrokerRecord:
        migrated = has_broker_data(data_dir)
        if migrated:
            # Made before the key service: its data keys are wrapped by the service-owned
            # key, so it is a broker created with kms_key = "owned".
            if kms_key not in (None, OWNED_KEY):
                raise BrokerKeyError(
                    f"encryption.kms_key = {kms_key!r}, but the broker in {data_dir} was "
                    "created before key choices existed, with the service-owned key (kms_key = "
                    '"owned"); its key is fixed: remove kms_key or set it to "owned"'
                )
            broker_id = _legacy_broker_id(data_dir) or new_broker_id()
            kind, key_id, arn = self._resolve(OWNED_KEY)
        else:
            broker_id = new_broker_id()
            kind, key_id, arn = self._resolve(kms_key)
        principal = storage_principal(self.service.account_id, broker_id)
        grants: list[str] = []
        if kind != KIND_OWNED:
            grants.append(self._grant(key_id, broker_id, principal))
        try:
            broker_key = self.service.create_broker_key(
                key_id,
                self._storage_caller(principal),
                context={BROKER_CONTEXT_KEY: broker_id, "purpose": "sealmq-broker-key"},
                description=f"sealmq broker {broker_id}",
            )
        except KmsError as exc:
            for grant_id in grants:
                with contextlib.suppress(KmsError):
                    self._retire(key_id, grant_id)
            raise BrokerKeyError(
                f"cannot create the broker's key under {arn}: {exc.code}: {exc.message}"
            ) from None
        log.info("broker %s created with %s", broker_id, kind)
        return BrokerRecord(
            broker_id=broker_id,
            key_kind=kind,
            kms_key_id=key_id,
            kms_key_arn=arn,
            broker_key_id=broker_key,
            storage_principal=principal,
            grant_ids=tuple(grants),
            created=_now_iso(),
            migrated=migrated,
            rotation_pending=migrated,
            named_as=kms_key or MANAGED_KEY,
        )

    # -- later starts -----------------------------------------------------------------

    def verify(self, record: BrokerRecord, kms_key: str | None) -> None:
        if record.key_kind == KIND_EXTERNAL:
            raise BrokerKeyError(
                f"broker {record.broker_id} was created with {record.describe()}; the "
                "configuration no longer names that endpoint (encryption.kms_endpoint). A "
                "broker's key is fixed when it is created."
            )
        if kms_key is None or kms_key in (record.kms_key_id, record.kms_key_arn):
            return
        if kms_key == OWNED_KEY:
            if record.key_kind != KIND_OWNED:
                raise _mismatch(record, kms_key)
            return
        if kms_key == MANAGED_KEY or _is_managed_alias(kms_key):
            if record.key_kind != KIND_MANAGED:
                raise _mismatch(record, kms_key)
            return
        if record.key_kind != KIND_CUSTOMER or not _is_alias(kms_key):
            raise _mismatch(record, kms_key)
        try:
            meta = self.service.call("DescribeKey", {"KeyId": kms_key}, self._admin())
        except KmsError as exc:
            why = f"cannot be resolved ({exc.code}: {exc.message})"
            raise _mismatch(record, kms_key, why) from None
        if meta["KeyMetadata"]["KeyId"] != record.kms_key_id:
            raise _mismatch(record, kms_key, f"names {meta['KeyMetadata']['Arn']}")

    # -- use ----------------------------------------------------------------------------

    def provider(self, record: BrokerRecord) -> KeyProvider:
        assert record.broker_key_id is not None
        return ServiceKeyProvider(
            self.service,
            record.broker_key_id,
            record.storage_principal,
            via_service=False,
            pin_decrypt=not record.migrated,
        )

    def restore_access(self, record: BrokerRecord) -> tuple[BrokerRecord, str]:
        """A new grant for the storage principal (after a revoked one); returns its id."""
        if record.key_kind == KIND_OWNED:
            raise BrokerKeyError(
                "the broker uses the service-owned key, which takes no grants: there is no "
                "access to restore (is the key service's keys/ folder intact?)"
            )
        grant_id = self._grant(record.kms_key_id, record.broker_id, record.storage_principal)
        return replace(record, grant_ids=(*record.grant_ids, grant_id)), grant_id

    # -- deletion -----------------------------------------------------------------------

    def _retire(self, key_id: str, grant_id: str) -> None:
        self.service.call("RetireGrant", {"KeyId": key_id, "GrantId": grant_id}, self._admin())

    def shred(self, record: BrokerRecord) -> list[str]:
        """Retire the broker's grants and destroy its per-broker key; returns the grants."""
        retired: list[str] = []
        if record.key_kind != KIND_OWNED:
            try:
                grants = self.service.call(
                    "ListGrants",
                    {"KeyId": record.kms_key_id, "GranteePrincipal": record.storage_principal},
                    self._admin(),
                )["Grants"]
            except KmsError as exc:
                if exc.code != "NotFoundException":
                    raise BrokerKeyError(
                        f"cannot list the broker's grants: {exc.code}: {exc.message}"
                    ) from None
                grants = []  # the chosen key itself is gone: so are its grants
            for grant in grants:
                self._retire(record.kms_key_id, str(grant["GrantId"]))
                retired.append(str(grant["GrantId"]))
        if record.broker_key_id is not None:
            try:
                self.service.destroy_broker_key(record.broker_key_id, self._admin())
            except KmsError as exc:
                if exc.code != "NotFoundException":
                    raise BrokerKeyError(
                        f"cannot destroy the broker's key: {exc.code}: {exc.message}"
                    ) from None
                # Already destroyed (an earlier, interrupted delete, or the chosen key's
                # deletion took it along).
        return retired


class ExternalKeys(KeyBackend):
    """The broker's key in a KMS-compatible service at ``kms_endpoint`` (AWS KMS included)."""

    def __init__(self, settings: Settings) -> None:
        enc = settings.encryption
        assert enc.kms_endpoint is not None
        self.endpoint = enc.kms_endpoint
        self._settings = settings
        self._region = enc.kms_region or settings.kms.region
        self._checkers: list[RemoteKeyProvider] = []

    def _client_provider(self, key_id: str, *, for_check: bool = False) -> RemoteKeyProvider:
        enc = self._settings.encryption
        # The check's client makes one attempt per call (the check retries on its own);
        # the store's is bounded by the settings, for its writer thread (and so every
        # producer waiting for a confirmation) waits on it: botocore's defaults (3
        # attempts of 5 s connect + 10 s read) stalled them for up to 45 s.
        bounded: dict[str, Any] = (
            {
                "max_attempts": 1,
                "connect_timeout": CHECK_CONNECT_TIMEOUT,
                "read_timeout": CHECK_READ_TIMEOUT,
            }
            if for_check
            else {
                "max_attempts": enc.kms_max_attempts,
                "connect_timeout": enc.kms_connect_timeout,
                "read_timeout": enc.kms_read_timeout,
            }
        )
        return RemoteKeyProvider(
            self.endpoint,
            key_id,
            region=self._region,
            access_key_id=enc.kms_access_key_id,
            secret_access_key=enc.kms_secret_access_key,
            credentials_file=enc.kms_credentials_file,
            profile=enc.kms_profile,
            # None: botocore's own choice (AWS_CA_BUNDLE, ca_bundle in ~/.aws/config, certifi).
            verify=str(enc.kms_ca_bundle) if enc.kms_ca_bundle is not None else None,
            **bounded,
        )

    def _describe(self, ref: str) -> dict[str, Any]:
        provider = self._client_provider(ref)
        try:
            meta: dict[str, Any] = provider.client.describe_key(KeyId=ref)["KeyMetadata"]
        except Exception as exc:
            raise BrokerKeyError(f"KMS key {ref!r} at {self.endpoint}: {_reason(exc)}") from None
        finally:
            provider.close()
        return meta

    def create(self, data_dir: Path, kms_key: str | None) -> BrokerRecord:
        if has_broker_data(data_dir):
            raise BrokerKeyError(
                f"the broker in {data_dir} was created before key choices existed, with the "
                "embedded service-owned key; it cannot move to encryption.kms_endpoint"
            )
        assert kms_key is not None
        meta = self._describe(kms_key)
        if meta.get("KeyState") != "Enabled":
            raise BrokerKeyError(f"KMS key {meta.get('Arn')} is {meta.get('KeyState')}")
        broker_id = new_broker_id()
        arn = str(meta["Arn"])
        record = BrokerRecord(
            broker_id=broker_id,
            key_kind=KIND_EXTERNAL,
            kms_key_id=str(meta["KeyId"]),
            kms_key_arn=arn,
            broker_key_id=None,
            # Whoever the configured credentials authenticate as: sealmq cannot tell.
            storage_principal="",
            kms_endpoint=self.endpoint,
            created=_now_iso(),
            named_as=kms_key,
        )
        provider = self.provider(record)
        try:
            check_key_access(provider, broker_id, record.describe(), attempts=1)
        except KeyAccessError as exc:
            raise BrokerKeyError(f"the broker cannot use {arn}: {exc.info}") from None
        finally:
            _close(provider)
        return record

    def verify(self, record: BrokerRecord, kms_key: str | None) -> None:
        if record.key_kind != KIND_EXTERNAL or record.kms_endpoint != self.endpoint:
            raise BrokerKeyError(
                f"encryption.kms_endpoint = {self.endpoint!r}, but broker {record.broker_id} was "
                f"created with {record.describe()}. A broker's key is fixed when it is created "
                "(as in Amazon MQ)."
            )
        if kms_key is None or kms_key in (record.kms_key_id, record.kms_key_arn):
            return
        if not _is_alias(kms_key):
            raise _mismatch(record, kms_key)
        try:
            meta = self._describe(kms_key)
        except BrokerKeyError as exc:
            raise _mismatch(record, kms_key, f"cannot be resolved ({exc})") from None
        if meta["KeyId"] != record.kms_key_id:
            raise _mismatch(record, kms_key, f"names {meta['Arn']}")

    def provider(self, record: BrokerRecord) -> KeyProvider:
        return self._client_provider(record.kms_key_arn)

    def checker(self, record: BrokerRecord) -> KeyProvider:
        checker = self._client_provider(record.kms_key_arn, for_check=True)
        self._checkers.append(checker)
        return checker

    def close(self) -> None:
        checkers, self._checkers = self._checkers, []
        for checker in checkers:
            checker.close()

    def restore_access(self, record: BrokerRecord) -> tuple[BrokerRecord, str]:
        raise BrokerKeyError(
            f"the broker's key is {record.kms_key_arn} at {record.kms_endpoint}: restore the "
            "access of the broker's credentials there (key policy, IAM, grants, EnableKey)"
        )

    def shred(self, record: BrokerRecord) -> list[str]:
        return []


def open_backend(settings: Settings, service: KeyService | None) -> KeyBackend:
    """The key backend the settings choose (``service`` is the embedded one, if open)."""
    if settings.encryption.external:
        return ExternalKeys(settings)
    assert service is not None
    return EmbeddedKeys(service)


def _close(provider: object) -> None:
    close = getattr(provider, "close", None)
    if callable(close):
        close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KmsError):
        return f"{exc.code}: {exc.message}"
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error", {})
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, KmsError):
        return exc.code in _TRANSIENT_CODES
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _TRANSIENT_CODES or code.endswith("Throttling") or status >= 500
    # Connection refused, timeouts, TLS failures: the service may come back.
    return True


def key_failure_code(exc: BaseException) -> str:
    """The action code a store failure for lack of the key points to, before any check.

    The store's ``KeyUnavailableError`` carries the provider's exception as its
    cause: a KMS refusal is ``INVALID_KMS_KEY``; a timeout, a refused connection or
    a KMS fault is ``KMS_KEY_UNREACHABLE``.
    """
    cause = exc.__cause__
    if cause is None:
        return ACTION_INVALID_KMS_KEY  # the store's own finding (another data key came back)
    return ACTION_KMS_UNREACHABLE if _transient(cause) else ACTION_INVALID_KMS_KEY


def check_key_access(
    provider: KeyProvider,
    broker_id: str,
    key: str,
    *,
    attempts: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Prove the broker may use its key now: a data key made and unwrapped as the broker.

    Refusals raise :class:`KeyAccessError` (``INVALID_KMS_KEY``) at once; a
    service that cannot be reached is retried ``attempts`` times, ``backoff``
    seconds apart (doubling), then raises ``KMS_KEY_UNREACHABLE``. Blocking: call
    it off the event loop.
    """
    context = {"purpose": "sealmq-key-check", BROKER_CONTEXT_KEY: broker_id}
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            plaintext, wrapped = provider.generate_data_key(context)
            if provider.decrypt_data_key(wrapped, context) != plaintext:
                raise KeyAccessError(
                    ACTION_INVALID_KMS_KEY,
                    f"{key}: the key service returned another data key than it made",
                )
            return
        except KeyAccessError:
            raise
        except Exception as exc:
            if not _transient(exc):
                raise KeyAccessError(
                    ACTION_INVALID_KMS_KEY,
                    f"The broker cannot use {key}; the key service said: {_reason(exc)}",
                ) from None
            if attempt == attempts:
                raise KeyAccessError(
                    ACTION_KMS_UNREACHABLE,
                    f"The key service holding {key} did not answer after {attempts} "
                    f"attempts: {_reason(exc)}",
                ) from None
            sleep(delay)
            delay *= 2
