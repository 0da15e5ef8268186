"""KMS semantics: :class:`KeyService` answers AWS-shaped requests for one account.

``service.call("Encrypt", {"KeyId": ..., "Plaintext": b"..."}, caller)`` returns
the response dict KMS would (binary fields as ``bytes``, dates as epoch seconds)
or raises :class:`~sealmq.kms.errors.KmsError` named as KMS names it. Every call,
answered or refused, is appended to the audit trail.

Who may do what
  Each key's policy decides, evaluated as AWS evaluates it
  (:mod:`sealmq.kms.policy`): an explicit Deny wins over everything, grants
  included; then an Allow of the policy; then, for the operations a grant can
  allow, a grant (operations, constraints, grantee; revoked or retired grants
  stop working for the very next call); otherwise AccessDeniedException. The
  account principal in a policy (``arn:aws:iam::ACCOUNT:root``, as the default
  policy names it) means "the account's IAM decides": here that is the account's
  root user, the *admin* authenticated by the access key in the ``credentials``
  file. Any other principal needs a statement naming it or a grant. Operations
  on no key (CreateKey, ListKeys, ListAliases, ListRetirableGrants) are the
  admin's. A policy is checked when it is set: malformed, or using a condition
  this service cannot evaluate, it is refused (MalformedPolicyDocumentException),
  as is one that would lock its author out (unless
  ``BypassPolicyLockoutSafetyCheck``).

The three kinds of key Amazon MQ offers
  - *service-owned* (KeyManager none; like an AWS owned key): one per service,
    never listed, invisible on the wire; only in-process callers
    (``Caller.internal``) use it, e.g. through
    :class:`~sealmq.kms.clients.ServiceKeyProvider`.
  - *service-managed* ``alias/aws/mq`` (KeyManager AWS): created on first use by
    :meth:`KeyService.service_managed_key` (or a DescribeKey of the alias, as
    KMS does), rotated yearly. Its policy is the one AWS managed keys have: the
    account may describe, list, get and revoke grants; cryptographic use and
    CreateGrant only through the service (``Caller.via_service``) or a grant;
    everything else (DisableKey, ScheduleKeyDeletion, PutKeyPolicy, rotation
    settings, tags) is ``AccessDeniedException``, and aliases under
    ``alias/aws/`` cannot be created, updated or deleted
    (``NotAuthorizedException``). Its policy (:func:`aws_managed_key_policy`) is
    evaluated like any other, ``kms:ViaService`` and ``kms:CallerAccount`` included.
  - *customer-managed*: CreateKey.

Per-broker keys (crypto-shredding)
  :meth:`KeyService.create_broker_key` makes a key of kind ``sealed``: 32 random
  bytes wrapped (an ordinary ciphertext blob) by the chosen key, with an
  encryption context naming the new key. The plaintext material is never
  stored. Each use (Encrypt, Decrypt, ReEncrypt, GenerateDataKey*) by an
  in-process caller unwraps it through the chosen key, so the caller must be
  allowed that operation on the *chosen* key (its grant, with the request's
  encryption context) and the chosen key must be enabled: revoking the grant or
  disabling the chosen key stops the per-broker key too.
  :meth:`KeyService.destroy_broker_key` deletes the record, wrapped material
  included, and rewrites the keystore file: from then on nothing encrypted
  under the per-broker key can be decrypted again, even with the chosen key
  intact. (A backup of the keystore file taken before, together with the root
  key, would still hold it: keep backups of ``keys/`` as short-lived as the data.)
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sealmq.kms.audit import AUDIT_MAX_BYTES, AuditLog
from sealmq.kms.ciphertext import KEY_BYTES, seal_blob
from sealmq.kms.core import (
    ALIAS_NAME_PATTERN,
    BROKER_KEY_CONTEXT,
    SERVICE_MANAGED_ALIAS,
    CallContext,
    Caller,
    Handler,
    Operation,
    aws_managed_key_policy,
    default_key_policy,
)
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import DEFAULT_REGION, KIND_SEALED, KeyRecord, Keystore, KeystoreError
from sealmq.kms.ops_aliases import AliasOperations
from sealmq.kms.ops_crypto import CryptoOperations
from sealmq.kms.ops_grants import GrantOperations
from sealmq.kms.ops_keys import KeyOperations
from sealmq.kms.params import Request

__all__ = [
    "SERVICE_MANAGED_ALIAS",
    "Caller",
    "KeyService",
    "Operation",
    "aws_managed_key_policy",
    "default_key_policy",
    "open_key_service",
]

log = logging.getLogger(__name__)


class KeyService(KeyOperations, AliasOperations, CryptoOperations, GrantOperations):
    """The KMS API over a :class:`~sealmq.kms.keystore.Keystore`. Thread-safe.

    ``min_pending_window_days`` lowers ScheduleKeyDeletion's 7-day minimum (for
    tests); ``clock`` gives epoch seconds (deletion dates, rotation, audit times).
    """

    def __init__(
        self,
        keystore: Keystore,
        audit: AuditLog | None = None,
        *,
        min_pending_window_days: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            keystore, audit, min_pending_window_days=min_pending_window_days, clock=clock
        )
        self._ops: dict[str, tuple[Handler, bool]] = {
            "CreateKey": (self._create_key, False),
            "DescribeKey": (self._describe_key, True),
            "ListKeys": (self._list_keys, True),
            "EnableKey": (self._enable_key, False),
            "DisableKey": (self._disable_key, False),
            "ScheduleKeyDeletion": (self._schedule_key_deletion, False),
            "CancelKeyDeletion": (self._cancel_key_deletion, False),
            "CreateAlias": (self._create_alias, False),
            "UpdateAlias": (self._update_alias, False),
            "DeleteAlias": (self._delete_alias, False),
            "ListAliases": (self._list_aliases, True),
            "Encrypt": (self._encrypt, True),
            "Decrypt": (self._decrypt, True),
            "ReEncrypt": (self._re_encrypt, True),
            "GenerateDataKey": (self._generate_data_key, True),
            "GenerateDataKeyWithoutPlaintext": (self._generate_data_key_without_plaintext, True),
            "GenerateRandom": (self._generate_random, True),
            "CreateGrant": (self._create_grant, False),
            "ListGrants": (self._list_grants, True),
            "ListRetirableGrants": (self._list_retirable_grants, True),
            "RetireGrant": (self._retire_grant, False),
            "RevokeGrant": (self._revoke_grant, False),
            "EnableKeyRotation": (self._enable_key_rotation, False),
            "DisableKeyRotation": (self._disable_key_rotation, False),
            "GetKeyRotationStatus": (self._get_key_rotation_status, True),
            "RotateKeyOnDemand": (self._rotate_key_on_demand, False),
            "ListKeyRotations": (self._list_key_rotations, True),
            "GetKeyPolicy": (self._get_key_policy, True),
            "PutKeyPolicy": (self._put_key_policy, False),
            "ListKeyPolicies": (self._list_key_policies, True),
            "UpdateKeyDescription": (self._update_key_description, False),
            "TagResource": (self._tag_resource, False),
            "UntagResource": (self._untag_resource, False),
            "ListResourceTags": (self._list_resource_tags, True),
        }

    @property
    def audit_log(self) -> AuditLog | None:
        """The audit trail every call is appended to (None when the service keeps none)."""
        return self._audit

    def close(self) -> None:
        """Seal the audit trail's checkpoint in the keystore, then close the trail.

        (The keystore needs no closing: every change is on disk.)
        """
        if self._audit is None:
            return
        try:
            self._ks.save_audit_checkpoint()
        except (OSError, KeystoreError):
            log.exception("key service: cannot checkpoint the audit trail")
        finally:
            self._audit.close()

    def __enter__(self) -> KeyService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def operations(self) -> list[Operation]:
        """Every operation served, and whether CloudTrail counts it read-only."""
        return [Operation(name, ro) for name, (_, ro) in self._ops.items()]

    # -- the one entry point -----------------------------------------------------------

    def call(
        self,
        operation: str,
        request: Request | None = None,
        caller: Caller | None = None,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one KMS operation; every call, answered or refused, is audited."""
        request = request if request is not None else {}
        caller = caller if caller is not None else self.admin_caller()
        ctx = CallContext(request_id or str(uuid.uuid4()))
        entry = self._ops.get(operation)
        if entry is None:
            error = KmsError("UnknownOperationException", f"Unknown operation {operation[:64]}")
            self._record(operation, request, caller, ctx, True, error=error)
            raise error
        handler, read_only = entry
        try:
            with self._ks.lock:
                self._housekeeping()
                response = handler(request, caller, ctx)
        except KmsError as exc:
            self._record(operation, request, caller, ctx, read_only, error=exc)
            raise
        except Exception as exc:
            log.exception("key service: %s failed", operation)
            error = KmsError("KMSInternalException", "An internal error occurred.")
            self._record(operation, request, caller, ctx, read_only, error=error)
            raise error from exc
        self._record(operation, request, caller, ctx, read_only, response=response)
        return response

    def record_refusal(
        self,
        operation: str,
        caller: Caller,
        error: KmsError,
        *,
        request_id: str | None = None,
    ) -> None:
        """Audit a call the wire refused before it reached the service (bad signature, ...)."""
        ctx = CallContext(request_id or str(uuid.uuid4()))
        self._record(operation, {}, caller, ctx, True, error=error)

    # -- kinds of key Amazon MQ offers ---------------------------------------------------

    def service_managed_key(self, alias: str = "aws/mq") -> dict[str, Any]:
        """The KeyMetadata of the service-managed key ``alias``, creating it on first use."""
        name = alias if alias.startswith("alias/") else f"alias/{alias}"
        if not name.startswith("alias/aws/") or not ALIAS_NAME_PATTERN.match(name):
            raise KmsError("InvalidAliasNameException", f"{name} is not an AWS managed alias")
        ctx = CallContext(str(uuid.uuid4()))
        caller = self.service_caller()
        with self._ks.lock:
            created = name not in self._ks.aliases
            key = self._aws_managed_key(name)
            meta = self._metadata(key)
        if created:
            ctx.touch(self._arn(key))
            self._record("CreateKey", {}, caller, ctx, False, response={"KeyMetadata": meta})
        return meta

    def create_broker_key(
        self,
        parent_key_id: str,
        caller: Caller | None = None,
        *,
        context: Mapping[str, str] | None = None,
        description: str = "",
    ) -> str:
        """A per-broker key sealed under ``parent_key_id``; returns its id.

        ``caller`` (default: the admin through the service) must be allowed
        GenerateDataKey on the parent with ``context``; use the id as a KeyId
        from in-process callers only.
        """
        caller = caller if caller is not None else self.service_caller()
        wrap_context = dict(context or {})
        request: dict[str, Any] = {"KeyId": parent_key_id, "EncryptionContext": wrap_context}
        ctx = CallContext(str(uuid.uuid4()))
        try:
            if not caller.internal:
                raise KmsError("AccessDeniedException", "Per-broker keys are internal.")
            with self._ks.lock:
                self._housekeeping()
                parent = self._resolve(parent_key_id, caller, allow_alias=True)
                if parent.kind == KIND_SEALED:
                    raise KmsError("ValidationException", "A per-broker key cannot wrap another.")
                ctx.touch(self._arn(parent))
                self._authorize(caller, parent, "GenerateDataKey", (), context=wrap_context)
                self._require_usable(parent)
                key_id = str(uuid.uuid4())
                material = os.urandom(KEY_BYTES)
                full_context = {**wrap_context, BROKER_KEY_CONTEXT: key_id}
                version = parent.current
                wrapped = seal_blob(
                    version.material, parent.key_id, version.number, material, full_context
                )
                record = KeyRecord(
                    key_id=key_id,
                    kind=KIND_SEALED,
                    created=self._clock(),
                    description=description,
                    parent_key_id=parent.key_id,
                    wrapped_material=wrapped,
                    wrap_context=wrap_context,
                    creator=caller.principal,
                )
                self._ks.keys[key_id] = record
                self._ks.save()
                ctx.touch(self._arn(record))
        except KmsError as exc:
            self._record("CreateBrokerKey", request, caller, ctx, False, error=exc)
            raise
        self._record("CreateBrokerKey", request, caller, ctx, False, response={"KeyId": key_id})
        return key_id

    def destroy_broker_key(self, key_id: str, caller: Caller | None = None) -> None:
        """Delete a per-broker key and its wrapped material: its ciphertexts become unreadable.

        Allowed to the admin, to callers through the service and to the key's creator.
        """
        caller = caller if caller is not None else self.service_caller()
        ctx = CallContext(str(uuid.uuid4()))
        request = {"KeyId": key_id}
        try:
            with self._ks.lock:
                key = self._ks.keys.get(key_id)
                if key is None or key.kind != KIND_SEALED or not caller.internal:
                    raise KmsError(
                        "NotFoundException", f"Key '{self._ks.key_arn(key_id)}' does not exist"
                    )
                ctx.touch(self._arn(key))
                if not (
                    caller.principal in (self._ks.admin_principal, key.creator)
                    or caller.via_service is not None
                ):
                    raise self._denied(caller, "DestroyBrokerKey", key)
                del self._ks.keys[key_id]
                self._ks.save()
        except KmsError as exc:
            self._record("DestroyBrokerKey", request, caller, ctx, False, error=exc)
            raise
        self._record("DestroyBrokerKey", request, caller, ctx, False, response={})


def open_key_service(
    data_dir: Path,
    *,
    region: str = DEFAULT_REGION,
    account_id: str | None = None,
    min_pending_window_days: int = 7,
    clock: Callable[[], float] = time.time,
    audit_fsync: bool = True,
    audit_max_bytes: int = AUDIT_MAX_BYTES,
) -> KeyService:
    """The local key service of a data folder, created on first start.

    Keys in ``<data_dir>/keys`` (an older one-key ``keystore.sealed`` there is
    migrated), audit trail in
    ``<data_dir>/audit/kms.jsonl`` (rotated past ``audit_max_bytes``), the admin's access key in
    ``<data_dir>/credentials`` ([default] profile, 0600). ``region`` and
    ``account_id`` (None: generated) are fixed when the folder is first used; a
    later call naming others raises :class:`~sealmq.kms.keystore.KeystoreError`.
    """
    data_dir = Path(data_dir)
    keystore = Keystore.open(data_dir / "keys", region=region, account_id=account_id, clock=clock)
    keystore.write_credentials_file(data_dir / "credentials")
    audit = AuditLog(
        data_dir / "audit" / "kms.jsonl",
        fsync=audit_fsync,
        checkpoint=keystore.audit_checkpoint,
        max_bytes=audit_max_bytes,
    )
    return KeyService(keystore, audit, min_pending_window_days=min_pending_window_days, clock=clock)
