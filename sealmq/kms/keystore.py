"""The key service's state and its one sealed file.

State: the account (12-digit id, region), keys with their versions (the 256-bit
material of each rotation), aliases, grants, key policies (kept as text), tags,
the access keys that authenticate callers of the wire protocol, and the audit
trail's checkpoint (:class:`~sealmq.kms.audit.Checkpoint`: how many lines it had
and the hash of the last, so cutting lines from its end shows). Everything is
kept in memory and, after every change, written whole to one file, sealed with
AES-256-GCM under the root key, atomically (temporary file, fsync, rename, fsync
of the folder).

On disk, in ``keys_dir`` (0700):

- ``root.key`` (0600): 32 random bytes, the root key (older data folders have it
  from the one-key service that came before).
- ``kms.sealed`` (0600): ``b"SEALMQKM" | u16 format | nonce | AES-GCM(state JSON)``
  with the 10-byte header as associated data.

Migration: a data folder made by the one-key service that came before holds
``keystore.sealed``. When ``kms.sealed`` does not exist yet, that key (same id,
same versions) becomes this service's *service-owned* key; its blobs use the same
format, so every data key it wrapped still unwraps. The old file is left untouched.

Nothing in clear on disk, nothing of key material in logs: records' ``repr``
hides material, secrets and wrapped keys.

The lock (:attr:`Keystore.lock`, re-entrant) guards all state; the service holds
it for the whole of each call. It is shared between processes too: while any
thread holds it, the process also holds an exclusive ``flock`` on
``keys_dir/kms.lock``, and taking it reloads the state if another process (the
``sealmq kms`` command next to a running broker, or a second broker using the same
key service) replaced ``kms.sealed`` since this one last read or wrote it. So
every call sees every change made before it, in any process, and two processes
never overwrite each other's changes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import secrets
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.kms.audit import Checkpoint
from sealmq.kms.ciphertext import KEY_BYTES
from sealmq.kms.files import (
    PrivateFileError,
    create_private_file,
    make_private_dir,
    read_private_file,
    replace_private_file,
)

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "DEFAULT_REGION",
    "KEYSTORE_FILE",
    "LEGACY_KEYSTORE_FILE",
    "LOCK_FILE",
    "ROOT_KEY_FILE",
    "AccessKey",
    "AliasRecord",
    "GrantRecord",
    "KeyRecord",
    "KeyVersion",
    "Keystore",
    "KeystoreError",
    "SharedLock",
]

ROOT_KEY_FILE = "root.key"
KEYSTORE_FILE = "kms.sealed"
LEGACY_KEYSTORE_FILE = "keystore.sealed"
LOCK_FILE = "kms.lock"
DEFAULT_REGION = "us-east-1"
#: An AWS account id: exactly 12 digits.
ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}")

_NONCE_BYTES = 12
_HEAD = struct.Struct(">8sH")
_MAGIC = b"SEALMQKM"
_FORMAT = 1
_LEGACY_HEAD = _HEAD.pack(b"SEALMQKS", 1)

#: Kinds of key. ``customer`` and ``aws`` are visible in the account (KeyManager
#: CUSTOMER / AWS); ``owned`` is the service-owned key (never listed); ``sealed``
#: is a per-broker key whose material is wrapped by another key (see service.py).
KIND_CUSTOMER = "customer"
KIND_AWS = "aws"
KIND_OWNED = "owned"
KIND_SEALED = "sealed"
_KINDS = (KIND_CUSTOMER, KIND_AWS, KIND_OWNED, KIND_SEALED)


class KeystoreError(Exception):
    """The keystore cannot be opened: missing or wrong root key, damaged or foreign file."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


@dataclass(slots=True)
class KeyVersion:
    """One generation of a key's material; rotation appends one."""

    number: int
    material: bytes = field(repr=False)
    created: float
    #: None for the key's first material, else ``AUTOMATIC`` or ``ON_DEMAND``.
    rotation_type: str | None
    #: KMS's KeyMaterialId: 64 hex digits naming this material (never derived from it).
    material_id: str

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "material": _b64(self.material),
            "created": self.created,
            "rotation_type": self.rotation_type,
            "material_id": self.material_id,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyVersion:
        material = _unb64(doc["material"])
        if len(material) != KEY_BYTES:
            raise ValueError("key material of the wrong size")
        return cls(
            int(doc["number"]),
            material,
            float(doc["created"]),
            doc.get("rotation_type"),
            str(doc["material_id"]),
        )

    @classmethod
    def generate(cls, number: int, created: float, rotation_type: str | None) -> KeyVersion:
        return cls(number, os.urandom(KEY_BYTES), created, rotation_type, secrets.token_hex(32))


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    kind: str
    created: float
    description: str = ""
    #: ``Enabled``, ``Disabled`` or ``PendingDeletion``.
    state: str = "Enabled"
    deletion_date: float | None = None
    pending_window_days: int | None = None
    policy: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    versions: list[KeyVersion] = field(default_factory=list)
    rotation_enabled: bool = False
    rotation_period_days: int | None = None
    next_rotation: float | None = None
    on_demand_rotations: int = 0
    #: Sealed keys only: the key that wraps the material, and the wrapped material.
    parent_key_id: str | None = None
    wrapped_material: bytes | None = field(default=None, repr=False)
    #: Sealed keys only: the encryption context the material was wrapped with.
    wrap_context: dict[str, str] = field(default_factory=dict)
    #: Principal that created the key (sealed keys: who may destroy it besides the admin).
    creator: str = ""

    @property
    def enabled(self) -> bool:
        return self.state == "Enabled"

    @property
    def current(self) -> KeyVersion:
        return self.versions[-1]

    def version(self, number: int) -> KeyVersion | None:
        for version in self.versions:
            if version.number == number:
                return version
        return None

    def to_doc(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "kind": self.kind,
            "created": self.created,
            "description": self.description,
            "state": self.state,
            "deletion_date": self.deletion_date,
            "pending_window_days": self.pending_window_days,
            "policy": self.policy,
            "tags": [[k, v] for k, v in self.tags.items()],
            "versions": [v.to_doc() for v in self.versions],
            "rotation_enabled": self.rotation_enabled,
            "rotation_period_days": self.rotation_period_days,
            "next_rotation": self.next_rotation,
            "on_demand_rotations": self.on_demand_rotations,
            "parent_key_id": self.parent_key_id,
            "wrapped_material": (
                None if self.wrapped_material is None else _b64(self.wrapped_material)
            ),
            "wrap_context": self.wrap_context,
            "creator": self.creator,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyRecord:
        kind = str(doc["kind"])
        if kind not in _KINDS:
            raise ValueError(f"unknown key kind {kind!r}")
        wrapped = doc.get("wrapped_material")
        return cls(
            key_id=str(doc["key_id"]),
            kind=kind,
            created=float(doc["created"]),
            description=str(doc.get("description", "")),
            state=str(doc["state"]),
            deletion_date=doc.get("deletion_date"),
            pending_window_days=doc.get("pending_window_days"),
            policy=str(doc.get("policy", "")),
            tags={str(k): str(v) for k, v in doc.get("tags", [])},
            versions=[KeyVersion.from_doc(v) for v in doc.get("versions", [])],
            rotation_enabled=bool(doc.get("rotation_enabled", False)),
            rotation_period_days=doc.get("rotation_period_days"),
            next_rotation=doc.get("next_rotation"),
            on_demand_rotations=int(doc.get("on_demand_rotations", 0)),
            parent_key_id=doc.get("parent_key_id"),
            wrapped_material=None if wrapped is None else _unb64(wrapped),
            wrap_context={str(k): str(v) for k, v in doc.get("wrap_context", {}).items()},
            creator=str(doc.get("creator", "")),
        )


@dataclass(slots=True)
class AliasRecord:
    name: str
    key_id: str
    created: float
    updated: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AliasRecord:
        return cls(
            str(doc["name"]), str(doc["key_id"]), float(doc["created"]), float(doc["updated"])
        )


@dataclass(slots=True)
class GrantRecord:
    grant_id: str
    key_id: str
    grantee: str
    operations: list[str]
    created: float
    name: str = ""
    retiring: str | None = None
    #: ``{"EncryptionContextEquals": {...}}`` or ``{"EncryptionContextSubset": {...}}``.
    constraints: dict[str, dict[str, str]] | None = None
    #: The secret half of the grant's token (see service.py for the token format).
    token_secret: str = field(default="", repr=False)

    def to_doc(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "key_id": self.key_id,
            "grantee": self.grantee,
            "operations": list(self.operations),
            "created": self.created,
            "name": self.name,
            "retiring": self.retiring,
            "constraints": self.constraints,
            "token_secret": self.token_secret,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> GrantRecord:
        return cls(
            grant_id=str(doc["grant_id"]),
            key_id=str(doc["key_id"]),
            grantee=str(doc["grantee"]),
            operations=[str(op) for op in doc["operations"]],
            created=float(doc["created"]),
            name=str(doc.get("name", "")),
            retiring=doc.get("retiring"),
            constraints=doc.get("constraints"),
            token_secret=str(doc.get("token_secret", "")),
        )


@dataclass(slots=True)
class AccessKey:
    """A SigV4 credential: the access key id, its secret, and the principal it authenticates."""

    access_key_id: str
    secret: str = field(repr=False)
    principal: str
    created: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "access_key_id": self.access_key_id,
            "secret": self.secret,
            "principal": self.principal,
            "created": self.created,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AccessKey:
        return cls(
            str(doc["access_key_id"]),
            str(doc["secret"]),
            str(doc["principal"]),
            float(doc["created"]),
        )


def _new_access_key(principal: str, now: float) -> AccessKey:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    akid = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return AccessKey(akid, secrets.token_urlsafe(30), principal, now)


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


class SharedLock:
    """A re-entrant lock for the threads of this process that also excludes other processes.

    The outermost acquisition takes an exclusive ``flock`` on ``path`` and then runs
    ``on_acquire`` (the keystore reloads a state another process changed); the
    outermost release drops the ``flock``.
    """

    def __init__(self, path: Path, on_acquire: Callable[[], None]) -> None:
        self._path = path
        self._on_acquire = on_acquire
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> SharedLock:
        self._rlock.acquire()
        if self._depth == 0:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._on_acquire()
                except BaseException:
                    os.close(fd)
                    raise
            except BaseException:
                self._rlock.release()
                raise
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # releases the flock
        self._rlock.release()


class Keystore:
    """All keys, aliases, grants and access keys of one key service, sealed in ``keys_dir``.

    Open with :meth:`open`. Mutate only while holding :attr:`lock`, then call
    :meth:`save` before releasing it.
    """

    def __init__(
        self,
        path: Path,
        root: AESGCM,
        doc: dict[str, Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._root = root
        self._clock = clock
        self._signature = _signature(path)
        self._audit_source: Callable[[], Checkpoint | None] | None = None
        #: Incremented each time the state is reloaded because another process changed it.
        self.generation = 0
        self.lock = SharedLock(path.with_name(LOCK_FILE), self._reload_if_changed)
        self._apply(doc)

    def _apply(self, doc: dict[str, Any]) -> None:
        path = self._path
        self.account_id = str(doc["account_id"])
        self.region = str(doc["region"])
        self.admin_principal = f"arn:aws:iam::{self.account_id}:root"
        self.service_owned_key_id = str(doc["service_owned_key_id"])
        self.keys: dict[str, KeyRecord] = {}
        for k in doc.get("keys", []):
            record = KeyRecord.from_doc(k)
            self.keys[record.key_id] = record
        self.aliases: dict[str, AliasRecord] = {}
        for a in doc.get("aliases", []):
            alias = AliasRecord.from_doc(a)
            self.aliases[alias.name] = alias
        self.grants: dict[str, GrantRecord] = {}
        for g in doc.get("grants", []):
            grant = GrantRecord.from_doc(g)
            self.grants[grant.grant_id] = grant
        self.access_keys: dict[str, AccessKey] = {}
        for ak in doc.get("access_keys", []):
            access_key = AccessKey.from_doc(ak)
            self.access_keys[access_key.access_key_id] = access_key
        self.admin_access_key_id = str(doc["admin_access_key_id"])
        #: The audit trail's last checkpoint sealed here (None: none taken yet).
        self.audit_checkpoint = Checkpoint.from_doc(doc.get("audit_checkpoint"))
        if self.service_owned_key_id not in self.keys:
            raise KeystoreError(f"{path}: the service-owned key is missing")
        if self.admin_access_key_id not in self.access_keys:
            raise KeystoreError(f"{path}: the admin access key is missing")

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        keys_dir: Path,
        *,
        region: str = DEFAULT_REGION,
        account_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Keystore:
        """Load the keystore in ``keys_dir``, creating root key and state on first start.

        The account is created with ``region`` and ``account_id`` (None: 12 random
        digits) and keeps them: a later open naming another region, or another
        account id, is refused with :class:`KeystoreError` (ARNs, signing scopes and
        grants all carry them).
        """
        if account_id is not None and not ACCOUNT_ID_PATTERN.fullmatch(account_id):
            raise KeystoreError(f"account id must be exactly 12 digits, got {account_id[:32]!r}")
        keys_dir = Path(keys_dir)
        make_private_dir(keys_dir)
        # Another process may be creating or migrating the same keystore right now.
        with _flocked(keys_dir / LOCK_FILE):
            keystore = cls._open_locked(keys_dir, region, account_id, clock)
        if keystore.region != region:
            raise KeystoreError(
                f"the key service in {keys_dir} was created for region {keystore.region}; "
                f"the configuration names {region} ([kms] region): a key service keeps "
                "the region it was created with"
            )
        if account_id is not None and keystore.account_id != account_id:
            raise KeystoreError(
                f"the key service in {keys_dir} was created for account {keystore.account_id}; "
                f"the configuration names {account_id} ([kms] account_id): a key service "
                "keeps the account id it was created with"
            )
        return keystore

    @classmethod
    def _open_locked(
        cls,
        keys_dir: Path,
        region: str,
        account_id: str | None,
        clock: Callable[[], float],
    ) -> Keystore:
        root_path = keys_dir / ROOT_KEY_FILE
        path = keys_dir / KEYSTORE_FILE
        legacy = keys_dir / LEGACY_KEYSTORE_FILE
        if not root_path.exists() and (path.exists() or legacy.exists()):
            raise KeystoreError(f"{root_path} is missing; the keystore cannot be unsealed")
        try:
            if not root_path.exists():
                create_private_file(root_path, os.urandom(KEY_BYTES))
            root_bytes = read_private_file(root_path)
        except PrivateFileError as exc:
            raise KeystoreError(str(exc)) from exc
        if len(root_bytes) != KEY_BYTES:
            raise KeystoreError(f"{root_path} does not hold a 256-bit key")
        root = AESGCM(root_bytes)
        if not path.exists():
            doc = _initial_doc(region, account_id, clock(), _read_legacy(legacy, root))
            create_private_file(path, _seal(root, doc))
        try:
            blob = read_private_file(path)
        except PrivateFileError as exc:
            raise KeystoreError(str(exc)) from exc
        doc = _unseal(root, blob, path)
        try:
            return cls(path, root, doc, clock=clock)
        except (KeyError, ValueError, TypeError) as exc:
            raise KeystoreError(f"{path} is malformed") from exc

    # -- persistence ---------------------------------------------------------------

    def save(self) -> None:
        """Seal the whole state and replace the file atomically. Call with :attr:`lock` held.

        The audit trail's checkpoint rides along (see :meth:`track_audit`).
        """
        self._take_checkpoint()
        replace_private_file(self._path, _seal(self._root, self._to_doc()))
        self._signature = _signature(self._path)

    def track_audit(self, source: Callable[[], Checkpoint | None]) -> None:
        """Seal ``source()`` (the audit trail's checkpoint) with every save."""
        self._audit_source = source

    def save_audit_checkpoint(self) -> bool:
        """Save if the audit trail went past the sealed checkpoint; True if it did.

        For the moments no change of state saves anyway: every so many audit
        lines, and when the service closes.
        """
        with self.lock:
            if not self._take_checkpoint():
                return False
            replace_private_file(self._path, _seal(self._root, self._to_doc()))
            self._signature = _signature(self._path)
            return True

    def _take_checkpoint(self) -> bool:
        """Adopt the audit trail's checkpoint if it is further on; never go back."""
        if self._audit_source is None:
            return False
        checkpoint = self._audit_source()
        if checkpoint is None:
            return False
        current = self.audit_checkpoint
        if current is not None and checkpoint.lines <= current.lines:
            return False
        self.audit_checkpoint = checkpoint
        return True

    def _reload_if_changed(self) -> None:
        """Under the ``flock``: load the file again if another process replaced it."""
        signature = _signature(self._path)
        if signature == self._signature:
            return
        try:
            doc = _unseal(self._root, read_private_file(self._path), self._path)
        except PrivateFileError as exc:
            raise KeystoreError(str(exc)) from exc
        try:
            self._apply(doc)
        except (KeyError, ValueError, TypeError) as exc:
            raise KeystoreError(f"{self._path} is malformed") from exc
        self._signature = signature
        self.generation += 1

    def _to_doc(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "service_owned_key_id": self.service_owned_key_id,
            "admin_access_key_id": self.admin_access_key_id,
            "keys": [k.to_doc() for k in self.keys.values()],
            "aliases": [a.to_doc() for a in self.aliases.values()],
            "grants": [g.to_doc() for g in self.grants.values()],
            "access_keys": [a.to_doc() for a in self.access_keys.values()],
            "audit_checkpoint": (
                None if self.audit_checkpoint is None else self.audit_checkpoint.to_doc()
            ),
        }

    # -- names ---------------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:key/{key_id}"

    def alias_arn(self, alias_name: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:{alias_name}"

    @property
    def path(self) -> Path:
        return self._path

    # -- access keys ---------------------------------------------------------------

    @property
    def admin_access_key(self) -> AccessKey:
        return self.access_keys[self.admin_access_key_id]

    def lookup_access_key(self, access_key_id: str) -> AccessKey | None:
        with self.lock:
            return self.access_keys.get(access_key_id)

    def create_access_key(self, principal: str) -> AccessKey:
        """A new access key authenticating ``principal`` (an ARN) on the wire."""
        with self.lock:
            access_key = _new_access_key(principal, self._clock())
            self.access_keys[access_key.access_key_id] = access_key
            self.save()
            return access_key

    def delete_access_key(self, access_key_id: str) -> bool:
        """Forget an access key (not the admin's); False if there was none."""
        with self.lock:
            if access_key_id == self.admin_access_key_id:
                raise KeystoreError("the admin access key cannot be deleted")
            if self.access_keys.pop(access_key_id, None) is None:
                return False
            self.save()
            return True

    def write_credentials_file(self, path: Path, profile: str = "default") -> None:
        """Write the admin's access key to ``path`` (0600) in AWS shared-credentials format.

        Rewrites the file only when its ``profile`` section differs, keeping other
        profiles a user added.
        """
        path = Path(path)
        make_private_dir(path.parent)
        admin = self.admin_access_key
        wanted = {"aws_access_key_id": admin.access_key_id, "aws_secret_access_key": admin.secret}
        # The usual cases, a first start and a file only we wrote, need no parser:
        # configparser stays out of the broker (~0.2 MiB resident).
        ours = f"[{profile}]\n" + "".join(f"{k} = {v}\n" for k, v in wanted.items()) + "\n"
        try:
            current = read_private_file(path) if path.exists() else None
        except PrivateFileError as exc:
            raise KeystoreError(f"cannot update {path}: {exc}") from exc
        if current is None:
            replace_private_file(path, ours.encode())
            return
        if current == ours.encode():
            return
        import configparser

        config = configparser.ConfigParser(interpolation=None)
        try:
            config.read_string(current.decode())
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise KeystoreError(f"cannot update {path}: {exc}") from exc
        if config.has_section(profile) and dict(config.items(profile)) == wanted:
            return
        if not config.has_section(profile):
            config.add_section(profile)
        for key in list(config.options(profile)):
            config.remove_option(profile, key)
        for key, value in wanted.items():
            config.set(profile, key, value)
        out = io.StringIO()
        config.write(out)
        replace_private_file(path, out.getvalue().encode())


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced (every save is a rename of a new file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _seal(root: AESGCM, doc: dict[str, Any]) -> bytes:
    head = _HEAD.pack(_MAGIC, _FORMAT)
    nonce = os.urandom(_NONCE_BYTES)
    return head + nonce + root.encrypt(nonce, json.dumps(doc).encode(), head)


def _unseal(root: AESGCM, blob: bytes, path: Path) -> dict[str, Any]:
    head = _HEAD.pack(_MAGIC, _FORMAT)
    if blob[: _HEAD.size] != head:
        raise KeystoreError(f"{path} is not a keystore of this version")
    nonce = blob[_HEAD.size : _HEAD.size + _NONCE_BYTES]
    try:
        plain = root.decrypt(nonce, blob[_HEAD.size + _NONCE_BYTES :], head)
    except InvalidTag:
        raise KeystoreError(f"{path} cannot be unsealed with this root key") from None
    try:
        doc = json.loads(plain)
    except ValueError as exc:
        raise KeystoreError(f"{path} is malformed") from exc
    if not isinstance(doc, dict):
        raise KeystoreError(f"{path} is malformed")
    return doc


def _read_legacy(path: Path, root: AESGCM) -> tuple[str, list[KeyVersion]] | None:
    """The key of an older one-key ``keystore.sealed`` in the same folder, if there is one."""
    if not path.exists():
        return None
    try:
        blob = read_private_file(path)
    except PrivateFileError as exc:
        raise KeystoreError(str(exc)) from exc
    if blob[: _HEAD.size] != _LEGACY_HEAD:
        raise KeystoreError(f"{path} is not a keystore of a known version")
    nonce = blob[_HEAD.size : _HEAD.size + _NONCE_BYTES]
    try:
        plain = root.decrypt(nonce, blob[_HEAD.size + _NONCE_BYTES :], _LEGACY_HEAD)
        doc = json.loads(plain)
        key_id = str(doc["key_id"])
        versions = [
            KeyVersion(
                int(v["version"]),
                _unb64(v["material"]),
                0.0,
                None if i == 0 else "ON_DEMAND",
                secrets.token_hex(32),
            )
            for i, v in enumerate(sorted(doc["versions"], key=lambda v: int(v["version"])))
        ]
    except InvalidTag:
        raise KeystoreError(f"{path} cannot be unsealed with this root key") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{path} is malformed") from exc
    if not versions or any(len(v.material) != KEY_BYTES for v in versions):
        raise KeystoreError(f"{path} holds no usable key material")
    return key_id, versions


def _initial_doc(
    region: str,
    account_id: str | None,
    now: float,
    legacy: tuple[str, list[KeyVersion]] | None,
) -> dict[str, Any]:
    if account_id is None:
        account_id = str(secrets.randbelow(9 * 10**11) + 10**11)
    if legacy is not None:
        owned_id, versions = legacy
        for version in versions:
            version.created = now
    else:
        owned_id, versions = str(uuid.uuid4()), [KeyVersion.generate(1, now, None)]
    owned = KeyRecord(
        key_id=owned_id,
        kind=KIND_OWNED,
        created=now,
        description="sealmq service-owned key",
        versions=versions,
        creator="sealmq",
    )
    admin = _new_access_key(f"arn:aws:iam::{account_id}:root", now)
    return {
        "account_id": account_id,
        "region": region,
        "service_owned_key_id": owned_id,
        "admin_access_key_id": admin.access_key_id,
        "keys": [owned.to_doc()],
        "aliases": [],
        "grants": [],
        "access_keys": [admin.to_doc()],
    }
