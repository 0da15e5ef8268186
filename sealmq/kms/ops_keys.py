"""Key operations: create, describe, list, enable, disable, delete, rotate, policies, tags.

Key-management calls are the admin's on customer-managed keys only; on the
service-managed key the account may only read (see ``ServiceCore._manage``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sealmq.kms.core import (
    DAY_SECONDS,
    DEFAULT_ROTATION_DAYS,
    SYMMETRIC,
    CallContext,
    Caller,
    ServiceCore,
    default_key_policy,
)
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import KIND_AWS, KIND_CUSTOMER, KeyRecord, KeyVersion
from sealmq.kms.params import Request, opt_bool, opt_int, opt_str, opt_str_list, page, req_str
from sealmq.kms.policy import parse_policy

__all__ = ["KeyOperations"]

#: KMS's bounds on ScheduleKeyDeletion's PendingWindowInDays (default 30; minimum 7,
#: lowered only for tests through ``min_pending_window_days``).
MAX_PENDING_WINDOW_DAYS = 30
DEFAULT_PENDING_WINDOW_DAYS = 30
#: KMS allows 25 on-demand rotations per key.
MAX_ON_DEMAND_ROTATIONS = 25
#: KMS's limits: 50 tags per key, 32 KiB per key policy.
MAX_TAGS = 50
MAX_POLICY_BYTES = 32768


class KeyOperations(ServiceCore):
    # -- keys ---------------------------------------------------------------------------

    def _create_key(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "CreateKey", None)
        policy = opt_str(req, "Policy", max_len=131072)
        description = opt_str(req, "Description", min_len=0, max_len=8192) or ""
        usage = opt_str(req, "KeyUsage") or "ENCRYPT_DECRYPT"
        if usage != "ENCRYPT_DECRYPT":
            raise KmsError("UnsupportedOperationException", f"KeyUsage {usage} is not supported.")
        spec = opt_str(req, "KeySpec")
        cmk_spec = opt_str(req, "CustomerMasterKeySpec")
        if spec is not None and cmk_spec is not None:
            raise KmsError(
                "ValidationException",
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request.",
            )
        if (spec or cmk_spec or SYMMETRIC) != SYMMETRIC:
            raise KmsError(
                "UnsupportedOperationException", f"KeySpec {spec or cmk_spec} is not supported."
            )
        origin = opt_str(req, "Origin") or "AWS_KMS"
        if origin != "AWS_KMS":
            raise KmsError("UnsupportedOperationException", f"Origin {origin} is not supported.")
        if req.get("CustomKeyStoreId") is not None or req.get("XksKeyId") is not None:
            raise KmsError("UnsupportedOperationException", "Custom key stores are not supported.")
        if opt_bool(req, "MultiRegion"):
            raise KmsError("UnsupportedOperationException", "Multi-Region keys are not supported.")
        bypass = bool(opt_bool(req, "BypassPolicyLockoutSafetyCheck"))
        key_id = str(uuid.uuid4())
        if policy is not None:
            _check_policy(policy)
            self._check_lockout(caller, policy, self._ks.key_arn(key_id), bypass)
        tags = _parse_tags(req.get("Tags"))
        now = self._clock()
        key = KeyRecord(
            key_id=key_id,
            kind=KIND_CUSTOMER,
            created=now,
            description=description,
            policy=policy if policy is not None else default_key_policy(self._ks.account_id),
            tags=dict(tags),
            versions=[KeyVersion.generate(1, now, None)],
            creator=caller.principal,
        )
        self._ks.keys[key.key_id] = key
        self._ks.save()
        ctx.touch(self._arn(key))
        return {"KeyMetadata": self._metadata(key)}

    def _describe_key(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=True, create_managed=True)
        ctx.touch(self._arn(key))
        self._authorize(caller, key, "DescribeKey", opt_str_list(req, "GrantTokens"))
        return {"KeyMetadata": self._metadata(key)}

    def _list_keys(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "ListKeys", None)
        visible = [k for k in self._ks.keys.values() if k.kind in (KIND_CUSTOMER, KIND_AWS)]
        chunk, paging = page(req, visible)
        return {"Keys": [{"KeyId": k.key_id, "KeyArn": self._arn(k)} for k in chunk], **paging}

    def _key_for_management(
        self, req: Request, caller: Caller, ctx: CallContext, action: str
    ) -> KeyRecord:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=False)
        ctx.touch(self._arn(key))
        self._manage(caller, key, action)
        return key

    def _enable_key(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "EnableKey")
        self._require_not_pending(key)
        if key.state != "Enabled":
            key.state = "Enabled"
            self._ks.save()
            self._refresh_due()
        return {}

    def _disable_key(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "DisableKey")
        self._require_not_pending(key)
        if key.state != "Disabled":
            key.state = "Disabled"
            self._ks.save()
        return {}

    def _schedule_key_deletion(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "ScheduleKeyDeletion")
        days = opt_int(req, "PendingWindowInDays", self._min_window, MAX_PENDING_WINDOW_DAYS)
        days = DEFAULT_PENDING_WINDOW_DAYS if days is None else days
        self._require_not_pending(key)
        key.state = "PendingDeletion"
        key.deletion_date = self._clock() + days * DAY_SECONDS
        key.pending_window_days = days
        self._ks.save()
        self._refresh_due()
        return {
            "KeyId": self._arn(key),
            "DeletionDate": key.deletion_date,
            "KeyState": key.state,
            "PendingWindowInDays": days,
        }

    def _cancel_key_deletion(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "CancelKeyDeletion")
        if key.state != "PendingDeletion":
            raise KmsError("KMSInvalidStateException", f"{self._arn(key)} is not pending deletion.")
        key.state = "Disabled"
        key.deletion_date = None
        key.pending_window_days = None
        self._ks.save()
        self._refresh_due()
        return {"KeyId": self._arn(key)}

    # -- rotation -------------------------------------------------------------------

    def _enable_key_rotation(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "EnableKeyRotation")
        period = opt_int(req, "RotationPeriodInDays", 90, 2560) or DEFAULT_ROTATION_DAYS
        self._require_usable(key)
        now = self._clock()
        if key.rotation_enabled and key.next_rotation is not None:
            old = key.rotation_period_days or DEFAULT_ROTATION_DAYS
            key.next_rotation = max(
                now, key.next_rotation - old * DAY_SECONDS + period * DAY_SECONDS
            )
        else:
            key.next_rotation = now + period * DAY_SECONDS
        key.rotation_enabled = True
        key.rotation_period_days = period
        self._ks.save()
        self._refresh_due()
        return {}

    def _disable_key_rotation(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "DisableKeyRotation")
        self._require_usable(key)
        key.rotation_enabled = False
        key.next_rotation = None
        self._ks.save()
        self._refresh_due()
        return {}

    def _get_key_rotation_status(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "GetKeyRotationStatus")
        out: dict[str, Any] = {"KeyRotationEnabled": key.rotation_enabled, "KeyId": self._arn(key)}
        if key.rotation_enabled:
            out["RotationPeriodInDays"] = key.rotation_period_days or DEFAULT_ROTATION_DAYS
            if key.next_rotation is not None:
                out["NextRotationDate"] = key.next_rotation
        return out

    def _rotate_key_on_demand(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "RotateKeyOnDemand")
        self._require_usable(key)
        if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
            raise KmsError(
                "LimitExceededException",
                f"{self._arn(key)} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} "
                "on-demand rotations.",
            )
        self._add_version(key, "ON_DEMAND")
        key.on_demand_rotations += 1
        self._ks.save()
        return {"KeyId": self._arn(key)}

    def _list_key_rotations(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "ListKeyRotations")
        rotations = [
            {
                "KeyId": self._arn(key),
                "KeyMaterialId": v.material_id,
                "RotationDate": v.created,
                "RotationType": v.rotation_type or "ON_DEMAND",
            }
            for v in key.versions[1:]
        ]
        chunk, paging = page(req, rotations)
        return {"Rotations": chunk, **paging}

    # -- policies and tags -------------------------------------------------------------

    def _policy_name(self, req: Request) -> str:
        name = opt_str(req, "PolicyName", max_len=128) or "default"
        if name != "default":
            raise KmsError("NotFoundException", "No such policy exists")
        return name

    def _get_key_policy(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "GetKeyPolicy")
        return {"Policy": key.policy, "PolicyName": self._policy_name(req)}

    def _put_key_policy(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "PutKeyPolicy")
        self._policy_name(req)
        policy = req_str(req, "Policy", max_len=131072)
        _check_policy(policy)
        bypass = bool(opt_bool(req, "BypassPolicyLockoutSafetyCheck"))
        self._check_lockout(caller, policy, self._arn(key), bypass)
        key.policy = policy
        self._ks.save()
        return {}

    def _list_key_policies(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        self._key_for_management(req, caller, ctx, "ListKeyPolicies")
        # A key has exactly one policy, named "default" (KMS's only valid name).
        chunk, paging = page(req, ["default"])
        return {"PolicyNames": chunk, **paging}

    def _update_key_description(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "UpdateKeyDescription")
        description = req_str(req, "Description", min_len=0, max_len=8192)
        self._require_not_pending(key)
        key.description = description
        self._ks.save()
        return {}

    def _tag_resource(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "TagResource")
        self._require_not_pending(key)
        tags = _parse_tags(req.get("Tags"), required=True)
        merged = {**key.tags, **dict(tags)}
        if len(merged) > MAX_TAGS:
            raise KmsError("LimitExceededException", f"A key can have at most {MAX_TAGS} tags.")
        key.tags = merged
        self._ks.save()
        return {}

    def _untag_resource(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "UntagResource")
        self._require_not_pending(key)
        names = opt_str_list(req, "TagKeys")
        if names is None:
            raise KmsError(
                "ValidationException",
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy "
                "constraint: Member must not be null",
            )
        for name in names:
            key.tags.pop(name, None)
        self._ks.save()
        return {}

    def _list_resource_tags(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._key_for_management(req, caller, ctx, "ListResourceTags")
        tags = [{"TagKey": k, "TagValue": v} for k, v in key.tags.items()]
        chunk, paging = page(req, tags, max_limit=50, default_limit=50)
        return {"Tags": chunk, **paging}


def _check_policy(policy: str) -> None:
    if len(policy.encode()) > MAX_POLICY_BYTES:
        raise KmsError(
            "LimitExceededException", f"The key policy exceeds {MAX_POLICY_BYTES} bytes."
        )
    parse_policy(policy)


def _parse_tags(value: object, *, required: bool = False) -> list[tuple[str, str]]:
    if value is None:
        if required:
            raise KmsError(
                "ValidationException",
                "1 validation error detected: Value null at 'tags' failed to satisfy "
                "constraint: Member must not be null",
            )
        return []
    if not isinstance(value, list):
        raise KmsError("SerializationException", "'Tags' must be a list")
    tags: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise KmsError("SerializationException", "a tag must be an object")
        name, tag_value = item.get("TagKey"), item.get("TagValue")
        if not isinstance(name, str) or not isinstance(tag_value, str):
            raise KmsError("TagException", "Each tag needs a TagKey and a TagValue.")
        if not 1 <= len(name) <= 128 or len(tag_value) > 256:
            raise KmsError("TagException", f"Tag {name[:128]} is too long or empty.")
        if name.startswith("aws:"):
            raise KmsError("TagException", "Tag keys beginning with aws: are reserved.")
        tags.append((name, tag_value))
    if len(tags) > MAX_TAGS:
        raise KmsError("LimitExceededException", f"A key can have at most {MAX_TAGS} tags.")
    return tags
