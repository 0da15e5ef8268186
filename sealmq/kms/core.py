"""The core of the key service: state checks, resolving keys, authorization, audit records.

:class:`ServiceCore` holds what every operation needs; the operations themselves
live in ``ops_keys``, ``ops_aliases``, ``ops_crypto`` and ``ops_grants``, and
:class:`~sealmq.kms.service.KeyService` puts them together (read its docstring
for who may do what and the kinds of key).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sealmq.kms import grants as g
from sealmq.kms.audit import AuditLog
from sealmq.kms.ciphertext import InvalidBlob, open_blob, parse_header, seal_blob
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import (
    KIND_AWS,
    KIND_CUSTOMER,
    KIND_OWNED,
    KIND_SEALED,
    AliasRecord,
    GrantRecord,
    KeyRecord,
    Keystore,
    KeystoreError,
    KeyVersion,
)
from sealmq.kms.params import Request, opt_bool, opt_str
from sealmq.kms.policy import ALLOW, DENY, Decision, RequestFacts, Statement, evaluate, parse_policy

__all__ = [
    "ALIAS_NAME_PATTERN",
    "BROKER_KEY_CONTEXT",
    "DAY_SECONDS",
    "DEFAULT_ROTATION_DAYS",
    "SERVICE_MANAGED_ALIAS",
    "SYMMETRIC",
    "CallContext",
    "Caller",
    "Handler",
    "Operation",
    "ServiceCore",
    "aws_managed_key_policy",
    "default_key_policy",
]

log = logging.getLogger(__name__)

#: The alias of Amazon MQ's service-managed key.
SERVICE_MANAGED_ALIAS = "alias/aws/mq"

DAY_SECONDS = 86400.0
#: AWS managed keys rotate every year; customer keys by default too.
DEFAULT_ROTATION_DAYS = 365
#: KMS accepts at most 10 grant tokens per request.
MAX_GRANT_TOKENS = 10
#: KMS's alias names (AliasNameType), with the mandatory prefix.
ALIAS_NAME_PATTERN = re.compile(r"^alias/[a-zA-Z0-9/_-]+$")
#: Context key naming a per-broker key in the context its material is wrapped with.
BROKER_KEY_CONTEXT = "sealmq:broker-key"
#: The only key spec and encryption algorithm of this service's keys.
SYMMETRIC = "SYMMETRIC_DEFAULT"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DECRYPT_DENIED = (
    "The ciphertext refers to a customer master key that does not exist, "
    "does not exist in this region, or you are not allowed to access."
)
_ASYMMETRIC_ALGORITHMS = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
#: Operations on grants (``kms:GrantIsForAWSResource`` is known for these).
_GRANT_ACTIONS = frozenset({"CreateGrant", "ListGrants", "RevokeGrant"})
#: Request fields that may appear in the audit trail (CloudTrail's requestParameters).
_AUDITED_FIELDS = (
    "KeyId",
    "TargetKeyId",
    "AliasName",
    "SourceKeyId",
    "DestinationKeyId",
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "EncryptionAlgorithm",
    "SourceEncryptionAlgorithm",
    "DestinationEncryptionAlgorithm",
    "KeySpec",
    "CustomerMasterKeySpec",
    "KeyUsage",
    "Origin",
    "NumberOfBytes",
    "Description",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "GranteePrincipal",
    "RetiringPrincipal",
    "Operations",
    "Constraints",
    "Name",
    "GrantId",
    "PolicyName",
    "TagKeys",
    "Tags",
    "Limit",
    "MultiRegion",
    "DryRun",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: the authenticated principal and how it reached the service."""

    #: An ARN, e.g. ``arn:aws:iam::111122223333:root`` or ``...:role/broker``.
    principal: str
    access_key_id: str | None = None
    source_ip: str = "127.0.0.1"
    user_agent: str = "sealmq"
    #: Set when a service (Amazon MQ: ``mq.<region>.amazonaws.com``) calls for the
    #: principal; AWS managed keys are usable only this way (or through a grant).
    via_service: str | None = None
    #: In-process callers may use the service-owned key and per-broker keys.
    internal: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    read_only: bool


@dataclass(slots=True)
class CallContext:
    request_id: str
    resources: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def touch(self, arn: str) -> None:
        if arn not in self.resources:
            self.resources.append(arn)


Handler = Callable[[Request, Caller, CallContext], dict[str, Any]]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _audit_value(value: Any) -> Any:
    # Only JSON-shaped values; bytes (plaintext, ciphertext) never reach the trail.
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _audit_value(v) for k, v in value.items() if not isinstance(v, bytes)}
    if isinstance(value, list):
        return [_audit_value(v) for v in value if not isinstance(v, bytes)]
    return None


def _audit_parameters(request: Request) -> dict[str, Any] | None:
    params = {
        _lower_first(name): _audit_value(request[name])
        for name in _AUDITED_FIELDS
        if name in request and not isinstance(request[name], bytes | bytearray | memoryview)
    }
    return params or None


def _response_elements(response: Mapping[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for name in ("KeyId", "SourceKeyId", "GrantId", "KeyState", "DeletionDate"):
        if name in response:
            out[_lower_first(name)] = response[name]
    meta = response.get("KeyMetadata")
    if isinstance(meta, Mapping):
        out["keyMetadata"] = {
            "keyId": meta.get("KeyId"),
            "arn": meta.get("Arn"),
            "keyState": meta.get("KeyState"),
        }
    return out or None


def default_key_policy(account_id: str) -> str:
    """The policy CreateKey gives a key when none is passed (KMS's default)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        },
        indent=2,
    )


def aws_managed_key_policy(account_id: str, service: str) -> str:
    """The policy of an AWS managed key: use through ``service`` only, read by the account."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"auto-{service.split('.')[0]}-1",
            "Statement": [
                {
                    "Sid": "Allow use of the key through the service for principals of the account",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": [
                        "kms:Encrypt",
                        "kms:Decrypt",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:CreateGrant",
                        "kms:ListGrants",
                        "kms:DescribeKey",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "kms:ViaService": service,
                            "kms:CallerAccount": account_id,
                        }
                    },
                },
                {
                    "Sid": "Allow the account to view the key and revoke grants",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                    "Resource": "*",
                },
            ],
        },
        indent=2,
    )


class ServiceCore:
    """State and checks shared by every operation; its methods expect the keystore's lock held."""

    def __init__(
        self,
        keystore: Keystore,
        audit: AuditLog | None = None,
        *,
        min_pending_window_days: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ks = keystore
        self._audit = audit
        self._min_window = min_pending_window_days
        self._clock = clock
        self._mq_service = f"mq.{keystore.region}.amazonaws.com"
        if audit is not None:
            keystore.track_audit(audit.checkpoint)
        self._due = 0.0
        self._generation = -1
        #: Keys whose stored policy is not a valid one, already logged.
        self._invalid_policies: set[str] = set()
        with self._ks.lock:
            self._refresh_due()

    # -- identity --------------------------------------------------------------------

    @property
    def keystore(self) -> Keystore:
        return self._ks

    @property
    def region(self) -> str:
        return self._ks.region

    @property
    def account_id(self) -> str:
        return self._ks.account_id

    @property
    def admin_principal(self) -> str:
        return self._ks.admin_principal

    @property
    def service_owned_key_id(self) -> str:
        """The id of the service-owned key (usable only by in-process callers)."""
        return self._ks.service_owned_key_id

    def admin_caller(self) -> Caller:
        """The admin principal, calling in-process."""
        return Caller(self._ks.admin_principal, self._ks.admin_access_key_id, internal=True)

    def service_caller(self, principal: str | None = None) -> Caller:
        """``principal`` (default: the admin) calling through Amazon MQ, in-process."""
        return Caller(
            principal or self._ks.admin_principal,
            source_ip=self._mq_service,
            user_agent=self._mq_service,
            via_service=self._mq_service,
            internal=True,
        )

    # -- housekeeping: deletion and automatic rotation when due --------------------------

    def _refresh_due(self) -> None:
        self._generation = self._ks.generation
        due = [
            t
            for key in self._ks.keys.values()
            for t in (
                key.deletion_date,
                key.next_rotation if key.rotation_enabled and key.state == "Enabled" else None,
            )
            if t is not None
        ]
        self._due = min(due) if due else float("inf")

    def _housekeeping(self) -> None:
        if self._generation != self._ks.generation:
            # Another process changed the keystore: its deletion dates and rotations count.
            self._refresh_due()
        now = self._clock()
        if now < self._due:
            return
        changed = False
        for key in list(self._ks.keys.values()):
            if key.deletion_date is not None and key.deletion_date <= now:
                self._delete_key_now(key)
                changed = True
            elif (
                key.rotation_enabled
                and key.next_rotation is not None
                and key.next_rotation <= now
                and key.state == "Enabled"
            ):
                self._add_version(key, "AUTOMATIC")
                period = (key.rotation_period_days or DEFAULT_ROTATION_DAYS) * DAY_SECONDS
                next_rotation = key.next_rotation
                while next_rotation <= now:
                    next_rotation += period
                key.next_rotation = next_rotation
                changed = True
        if changed:
            self._ks.save()
        self._refresh_due()

    def _delete_key_now(self, key: KeyRecord) -> None:
        del self._ks.keys[key.key_id]
        for name in [n for n, a in self._ks.aliases.items() if a.key_id == key.key_id]:
            del self._ks.aliases[name]
        for gid in [i for i, gr in self._ks.grants.items() if gr.key_id == key.key_id]:
            del self._ks.grants[gid]
        # Per-broker keys wrapped by it can never be unwrapped again.
        for child in [k for k in self._ks.keys.values() if k.parent_key_id == key.key_id]:
            del self._ks.keys[child.key_id]

    def _add_version(self, key: KeyRecord, rotation_type: str) -> None:
        number = key.current.number + 1
        key.versions.append(KeyVersion.generate(number, self._clock(), rotation_type))

    # -- resolving, state, authorization --------------------------------------------

    def _arn(self, key: KeyRecord) -> str:
        return self._ks.key_arn(key.key_id)

    def _not_found(self, key_id: str) -> KmsError:
        return KmsError("NotFoundException", f"Key '{self._ks.key_arn(key_id)}' does not exist")

    def _visible(self, key: KeyRecord, caller: Caller, *, allow_sealed: bool = False) -> bool:
        if key.kind == KIND_OWNED:
            return caller.internal
        if key.kind == KIND_SEALED:
            return caller.internal and allow_sealed
        return True

    def _resolve(
        self,
        ref: str,
        caller: Caller,
        *,
        allow_alias: bool,
        allow_sealed: bool = False,
        create_managed: bool = False,
    ) -> KeyRecord:
        """The key ``ref`` names: key id, key ARN, and where allowed alias name or alias ARN."""
        rest = ref
        if ref.startswith("arn:"):
            parts = ref.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise KmsError("NotFoundException", f"Invalid arn {ref[:256]}")
            if parts[3] != self._ks.region or parts[4] != self._ks.account_id:
                raise KmsError("NotFoundException", f"Key '{ref[:256]}' does not exist")
            rest = parts[5]
            if rest.startswith("key/"):
                rest = rest[4:]
            elif not rest.startswith("alias/"):
                raise KmsError("NotFoundException", f"Invalid arn {ref[:256]}")
        if rest.startswith("alias/"):
            if not allow_alias:
                raise KmsError("NotFoundException", f"Invalid keyId {ref[:256]}")
            alias = self._ks.aliases.get(rest)
            if (
                alias is None
                and rest == SERVICE_MANAGED_ALIAS
                and (create_managed or caller.via_service is not None)
            ):
                return self._aws_managed_key(rest)
            if alias is None:
                raise KmsError(
                    "NotFoundException", f"Alias {self._ks.alias_arn(rest[:256])} is not found."
                )
            rest = alias.key_id
        key = self._ks.keys.get(rest)
        if key is None or not self._visible(key, caller, allow_sealed=allow_sealed):
            if not _UUID.match(rest):
                raise KmsError("NotFoundException", f"Invalid keyId {ref[:256]}")
            raise self._not_found(rest)
        return key

    def _require_usable(self, key: KeyRecord) -> None:
        """Cryptographic operations need an enabled key (KMS's key-state table)."""
        if key.state == "Disabled":
            raise KmsError("DisabledException", f"{self._arn(key)} is disabled.")
        if key.state == "PendingDeletion":
            raise KmsError("KMSInvalidStateException", f"{self._arn(key)} is pending deletion.")

    def _require_not_pending(self, key: KeyRecord) -> None:
        if key.state == "PendingDeletion":
            raise KmsError("KMSInvalidStateException", f"{self._arn(key)} is pending deletion.")

    def _denied(
        self, caller: Caller, action: str, key: KeyRecord | None, *, explicit: bool = False
    ) -> KmsError:
        if key is None:
            return KmsError(
                "AccessDeniedException",
                f"User: {caller.principal} is not authorized to perform: kms:{action} "
                f"because no identity-based policy allows the kms:{action} action",
            )
        if explicit:
            return KmsError(
                "AccessDeniedException",
                f"User: {caller.principal} is not authorized to perform: kms:{action} on "
                f"resource: {self._arn(key)} with an explicit deny in a resource-based policy",
            )
        return KmsError(
            "AccessDeniedException",
            f"User: {caller.principal} is not authorized to perform: kms:{action} on resource: "
            f"{self._arn(key)} because no resource-based policy allows the kms:{action} action",
        )

    def _check_tokens(self, tokens: list[str] | None, key_ids: Collection[str]) -> None:
        """Each token must be one CreateGrant returned for a grant that exists on a key named.

        Grants here take effect at once, so a token adds no permission; what it
        names is still checked, as KMS refuses a token it does not know.
        """
        if tokens is None:
            return
        if len(tokens) > MAX_GRANT_TOKENS:
            raise KmsError(
                "ValidationException",
                "1 validation error detected: Value at 'grantTokens' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_GRANT_TOKENS}",
            )
        for token in tokens:
            if self._token_key_id(g.parse_token(token)) not in key_ids:
                raise KmsError(
                    "InvalidGrantTokenException",
                    "The grant token is not valid: it is not a token of a grant on this key.",
                )

    def _token_key_id(self, token: g.GrantToken) -> str | None:
        """The key an authentic grant token names; None for a token this service did not make."""
        grant = self._ks.grants.get(token.grant_id)
        key = self._ks.keys.get(token.key_id or "")
        material = key.versions[0].material if key is not None and key.versions else None
        return g.token_key_id(token, grant, material)

    def _grant_token(self, grant: GrantRecord) -> str:
        return g.make_token(grant, self._ks.keys[grant.key_id].versions[0].material)

    def _is_admin(self, caller: Caller) -> bool:
        return caller.principal == self._ks.admin_principal

    def _policy_key(self, key: KeyRecord) -> KeyRecord:
        """The key whose policy and grants decide: a per-broker key's parent, else itself."""
        if key.kind != KIND_SEALED:
            return key
        parent = self._ks.keys.get(key.parent_key_id or "")
        if parent is None:
            raise self._not_found(key.key_id)
        return parent

    def _statements(self, key: KeyRecord) -> tuple[Statement, ...]:
        try:
            return parse_policy(key.policy)
        except KmsError:
            # Only a policy stored before policies were enforced can fail here: it is
            # evaluated as the default policy, which is what was enforced until then.
            if key.key_id not in self._invalid_policies:
                self._invalid_policies.add(key.key_id)
                log.warning(
                    "key service: the policy of key %s is not a valid key policy; evaluating "
                    "the default policy instead (PutKeyPolicy a valid one)",
                    key.key_id,
                )
            return parse_policy(default_key_policy(self._ks.account_id))

    def _decide(
        self,
        caller: Caller,
        key: KeyRecord,
        action: str,
        context: Mapping[str, str] | None,
    ) -> Decision:
        facts = RequestFacts(
            principal=caller.principal,
            via_service=caller.via_service,
            encryption_context=context,
            grant_for_aws_resource=(
                caller.via_service is not None if action in _GRANT_ACTIONS else None
            ),
        )
        return evaluate(self._statements(key), action, self._arn(key), facts)

    def _authorize(
        self,
        caller: Caller,
        key: KeyRecord,
        action: str,
        grant_tokens: list[str] | tuple[str, ...] | None,
        *,
        context: Mapping[str, str] | None = None,
        also: KeyRecord | None = None,
    ) -> GrantRecord | None:
        """Allow ``action`` on ``key`` or raise AccessDeniedException; returns the grant used.

        The key policy decides first (an explicit Deny wins over everything, an
        Allow suffices), then the grants. A per-broker key is authorized as its
        parent (the chosen key). Grant tokens may name grants on ``key`` or
        ``also`` (ReEncrypt's other key).
        """
        key = self._policy_key(key)
        token_keys = {key.key_id}
        if also is not None:
            token_keys.add(self._policy_key(also).key_id)
        self._check_tokens(list(grant_tokens) if grant_tokens is not None else None, token_keys)
        if key.kind == KIND_OWNED:
            if caller.internal:
                return None
            raise self._denied(caller, action, key)
        decision = self._decide(caller, key, action, context)
        if decision == DENY:
            raise self._denied(caller, action, key, explicit=True)
        if decision == ALLOW:
            return None
        for grant in self._ks.grants.values():
            if (
                grant.key_id == key.key_id
                and grant.grantee == caller.principal
                and action in grant.operations
                and g.constraints_allow(grant.constraints, context)
            ):
                return grant
        raise self._denied(caller, action, key)

    def _manage(self, caller: Caller, key: KeyRecord, action: str) -> None:
        """Key-management actions: what the key policy allows (grants never do)."""
        if key.kind in (KIND_CUSTOMER, KIND_AWS):
            decision = self._decide(caller, key, action, None)
            if decision == ALLOW:
                return
            raise self._denied(caller, action, key, explicit=decision == DENY)
        raise self._denied(caller, action, key)

    def _check_lockout(self, caller: Caller, policy: str, key_arn: str, bypass: bool) -> None:
        """PutKeyPolicy/CreateKey: the new policy must let the caller change it again."""
        statements = parse_policy(policy)
        if bypass:
            return
        facts = RequestFacts(principal=caller.principal, via_service=caller.via_service)
        if evaluate(statements, "PutKeyPolicy", key_arn, facts) != ALLOW:
            raise KmsError(
                "MalformedPolicyDocumentException",
                "The new key policy will not allow you to update the key policy in the future.",
            )

    def _material(self, key: KeyRecord, version_number: int) -> bytes | None:
        """The material of one version of ``key`` (a per-broker key is unwrapped here)."""
        if key.kind != KIND_SEALED:
            version = key.version(version_number)
            return None if version is None else version.material
        if version_number != 1 or key.wrapped_material is None:
            return None
        parent = self._ks.keys.get(key.parent_key_id or "")
        if parent is None:
            raise self._not_found(key.key_id)
        self._require_usable(parent)
        header = parse_header(key.wrapped_material)
        parent_version = parent.version(header.version)
        if parent_version is None or header.key_id != parent.key_id:
            raise KmsError("KMSInternalException", "per-broker key material is damaged")
        context = {**key.wrap_context, BROKER_KEY_CONTEXT: key.key_id}
        try:
            return open_blob(parent_version.material, header, key.wrapped_material, context)
        except InvalidBlob:
            raise KmsError("KMSInternalException", "per-broker key material is damaged") from None

    def _seal(self, key: KeyRecord, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        if key.kind == KIND_SEALED:
            material = self._material(key, 1)
            assert material is not None
            return seal_blob(material, key.key_id, 1, plaintext, context)
        version = key.current
        return seal_blob(version.material, key.key_id, version.number, plaintext, context)

    def _key_for_blob(
        self,
        blob: bytes,
        key_ref: str | None,
        caller: Caller,
        action: str,
        context: dict[str, str],
        tokens: list[str] | None,
        ctx: CallContext,
        *,
        also: KeyRecord | None = None,
    ) -> tuple[KeyRecord, bytes]:
        """Authorize and open ``blob`` (Decrypt, ReEncrypt's source): (key, plaintext)."""
        try:
            header = parse_header(blob)
        except InvalidBlob:
            raise KmsError("InvalidCiphertextException", "") from None
        if key_ref is not None:
            named = self._resolve(key_ref, caller, allow_alias=True, allow_sealed=True)
            if named.key_id != header.key_id:
                raise KmsError(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify a KMS key that can perform "
                    "this operation.",
                )
        key = self._ks.keys.get(header.key_id)
        if key is None or not self._visible(key, caller, allow_sealed=True):
            raise KmsError("AccessDeniedException", _DECRYPT_DENIED)
        ctx.touch(self._arn(key))
        self._authorize(caller, key, action, tokens, context=context, also=also)
        self._require_usable(key)
        material = self._material(key, header.version)
        if material is None:
            raise KmsError("InvalidCiphertextException", "")
        try:
            return key, open_blob(material, header, blob, context)
        except InvalidBlob:
            raise KmsError("InvalidCiphertextException", "") from None

    # -- metadata ---------------------------------------------------------------------

    def _metadata(self, key: KeyRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "AWSAccountId": self._ks.account_id,
            "KeyId": key.key_id,
            "Arn": self._arn(key),
            "CreationDate": key.created,
            "Enabled": key.enabled,
            "Description": key.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": key.state,
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER" if key.kind == KIND_CUSTOMER else "AWS",
            "CustomerMasterKeySpec": SYMMETRIC,
            "KeySpec": SYMMETRIC,
            "EncryptionAlgorithms": [SYMMETRIC],
            "MultiRegion": False,
        }
        if key.versions:
            meta["CurrentKeyMaterialId"] = key.current.material_id
        if key.deletion_date is not None:
            meta["DeletionDate"] = key.deletion_date
        return meta

    def _aws_managed_key(self, alias_name: str) -> KeyRecord:
        alias = self._ks.aliases.get(alias_name)
        if alias is not None:
            return self._ks.keys[alias.key_id]
        now = self._clock()
        service = alias_name.split("/")[2]
        key = KeyRecord(
            key_id=str(uuid.uuid4()),
            kind=KIND_AWS,
            created=now,
            description=(
                f"Default key that protects my {service.upper()} data when no other key is defined"
            ),
            policy=aws_managed_key_policy(
                self._ks.account_id, f"{service}.{self._ks.region}.amazonaws.com"
            ),
            versions=[KeyVersion.generate(1, now, None)],
            rotation_enabled=True,
            rotation_period_days=DEFAULT_ROTATION_DAYS,
            next_rotation=now + DEFAULT_ROTATION_DAYS * DAY_SECONDS,
            creator=self._mq_service,
        )
        self._ks.keys[key.key_id] = key
        self._ks.aliases[alias_name] = AliasRecord(alias_name, key.key_id, now, now)
        self._ks.save()
        self._refresh_due()
        return key

    def _algorithm(self, req: Request, name: str = "EncryptionAlgorithm") -> str:
        algorithm = opt_str(req, name) or SYMMETRIC
        if algorithm in _ASYMMETRIC_ALGORITHMS:
            raise KmsError(
                "InvalidKeyUsageException",
                f"The key does not support the encryption algorithm {algorithm}.",
            )
        if algorithm != SYMMETRIC:
            raise KmsError(
                "ValidationException",
                f"1 validation error detected: Value '{algorithm[:64]}' at "
                f"'{_lower_first(name)}' failed to satisfy constraint: Member must satisfy enum "
                "value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
            )
        return algorithm

    def _no_recipient(self, req: Request) -> None:
        if req.get("Recipient") is not None:
            raise KmsError("UnsupportedOperationException", "Recipient is not supported.")

    def _dry_run(self, req: Request) -> None:
        if opt_bool(req, "DryRun"):
            raise KmsError(
                "DryRunOperationException",
                "The request would have succeeded, but the DryRun option is set.",
            )

    # -- audit --------------------------------------------------------------------------

    def _identity(self, caller: Caller) -> dict[str, Any]:
        arn = caller.principal
        if arn.endswith(":root"):
            kind = "Root"
        elif ":assumed-role/" in arn or ":role/" in arn:
            kind = "AssumedRole"
        elif ":user/" in arn:
            kind = "IAMUser"
        else:
            kind = "Unknown"
        parts = arn.split(":")
        identity: dict[str, Any] = {
            "type": kind,
            "arn": arn,
            "accountId": parts[4] if len(parts) > 4 and parts[4] else self._ks.account_id,
            "accessKeyId": caller.access_key_id,
        }
        if caller.via_service:
            identity["invokedBy"] = caller.via_service
        return identity

    def _record(
        self,
        operation: str,
        request: Request,
        caller: Caller,
        ctx: CallContext,
        read_only: bool,
        *,
        response: Mapping[str, Any] | None = None,
        error: KmsError | None = None,
    ) -> None:
        if self._audit is None:
            return
        event: dict[str, Any] = {
            "eventVersion": "1.08",
            "userIdentity": self._identity(caller),
            "eventTime": _iso(self._clock()),
            "eventSource": "kms.amazonaws.com",
            "eventName": operation,
            "awsRegion": self._ks.region,
            "sourceIPAddress": caller.via_service or caller.source_ip,
            "userAgent": caller.user_agent,
            "requestParameters": _audit_parameters(request),
            "responseElements": None if response is None else _response_elements(response),
            "requestID": ctx.request_id,
            "eventID": str(uuid.uuid4()),
            "readOnly": read_only,
            "resources": [
                {"accountId": self._ks.account_id, "type": "AWS::KMS::Key", "ARN": arn}
                for arn in ctx.resources
            ],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": self._ks.account_id,
            "eventCategory": "Management",
        }
        if error is not None:
            event["errorCode"] = error.code
            event["errorMessage"] = error.message
        if ctx.extra:
            event["additionalEventData"] = dict(ctx.extra)
        try:
            self._audit.record(event)
        except OSError:
            # The call has happened; losing its line must be loud but not undo it.
            log.exception("key service: cannot append to the audit trail")
            return
        if self._audit.checkpoint_due():
            try:
                self._ks.save_audit_checkpoint()
            except (OSError, KeystoreError):
                log.exception("key service: cannot checkpoint the audit trail")
