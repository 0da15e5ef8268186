"""Grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sealmq.kms import grants as g
from sealmq.kms.core import CallContext, Caller, ServiceCore
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import KIND_AWS, KIND_CUSTOMER, KIND_OWNED, GrantRecord
from sealmq.kms.params import Request, opt_str, opt_str_list, page, req_str

__all__ = ["GrantOperations"]

#: KMS's GrantNameType pattern.
_GRANT_NAME = re.compile(r"^[a-zA-Z0-9:/_-]+$")


class GrantOperations(ServiceCore):
    # -- grants ---------------------------------------------------------------------

    def _grant_entry(self, grant: GrantRecord) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "KeyId": self._ks.key_arn(grant.key_id),
            "GrantId": grant.grant_id,
            "CreationDate": grant.created,
            "GranteePrincipal": grant.grantee,
            "IssuingAccount": f"arn:aws:iam::{self._ks.account_id}:root",
            "Operations": list(grant.operations),
        }
        if grant.name:
            entry["Name"] = grant.name
        if grant.retiring:
            entry["RetiringPrincipal"] = grant.retiring
        if grant.constraints:
            entry["Constraints"] = {k: dict(v) for k, v in grant.constraints.items()}
        return entry

    def _create_grant(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=False)
        ctx.touch(self._arn(key))
        if (
            req.get("GranteeServicePrincipal") is not None
            or req.get("RetiringServicePrincipal") is not None
        ):
            raise KmsError("UnsupportedOperationException", "Service principals are not supported.")
        grantee = req_str(req, "GranteePrincipal", max_len=256)
        retiring = opt_str(req, "RetiringPrincipal", max_len=256)
        operations = opt_str_list(req, "Operations") or []
        g.check_operations(operations)
        operations = sorted(set(operations), key=operations.index)
        constraints = g.parse_constraints(req.get("Constraints"), operations)
        name = opt_str(req, "Name", max_len=256) or ""
        if name and not _GRANT_NAME.match(name):
            raise KmsError(
                "ValidationException",
                f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
            )
        # CreateGrant through a grant: the new grant may not exceed the one it comes from.
        context = None
        if constraints:
            context = next(iter(constraints.values()))
        parent = self._authorize(
            caller, key, "CreateGrant", opt_str_list(req, "GrantTokens"), context=context
        )
        if parent is not None and (
            not set(operations) <= set(parent.operations)
            or not g.is_at_least_as_strict(constraints, parent.constraints)
        ):
            raise self._denied(caller, "CreateGrant", key)
        self._require_usable(key)
        self._dry_run(req)
        for existing in self._ks.grants.values():
            if (
                name
                and existing.name == name
                and existing.key_id == key.key_id
                and existing.grantee == grantee
                and existing.retiring == retiring
                and existing.operations == operations
                and existing.constraints == constraints
            ):
                # KMS answers a repeated named grant with the same grant id.
                return {"GrantToken": self._grant_token(existing), "GrantId": existing.grant_id}
        grant = GrantRecord(
            grant_id=g.new_grant_id(),
            key_id=key.key_id,
            grantee=grantee,
            operations=operations,
            created=self._clock(),
            name=name,
            retiring=retiring,
            constraints=constraints,
            token_secret=secrets.token_hex(32),
        )
        self._ks.grants[grant.grant_id] = grant
        self._ks.save()
        ctx.extra["grantId"] = grant.grant_id
        return {"GrantToken": self._grant_token(grant), "GrantId": grant.grant_id}

    def _list_grants(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=False)
        ctx.touch(self._arn(key))
        self._manage(caller, key, "ListGrants")
        grant_id = opt_str(req, "GrantId", max_len=128)
        if grant_id is not None:
            g.check_grant_id(grant_id)
        grantee = opt_str(req, "GranteePrincipal", max_len=256)
        found = [
            gr
            for gr in self._ks.grants.values()
            if gr.key_id == key.key_id
            and (grant_id is None or gr.grant_id == grant_id)
            and (grantee is None or gr.grantee == grantee)
        ]
        chunk, paging = page(req, found)
        return {"Grants": [self._grant_entry(gr) for gr in chunk], **paging}

    def _list_retirable_grants(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        if req.get("RetiringServicePrincipal") is not None:
            raise KmsError("UnsupportedOperationException", "Service principals are not supported.")
        retiring = req_str(req, "RetiringPrincipal", max_len=256)
        if not self._is_admin(caller) and caller.principal != retiring:
            raise self._denied(caller, "ListRetirableGrants", None)
        found = [gr for gr in self._ks.grants.values() if gr.retiring == retiring]
        chunk, paging = page(req, found)
        return {"Grants": [self._grant_entry(gr) for gr in chunk], **paging}

    def _retire_grant(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        token = opt_str(req, "GrantToken", max_len=8192)
        grant: GrantRecord | None
        if token is not None:
            parsed = g.parse_token(token)
            grant = self._ks.grants.get(parsed.grant_id)
            if grant is None or self._token_key_id(parsed) != grant.key_id:
                raise KmsError("InvalidGrantTokenException", "The grant token is not valid.")
        else:
            key_ref = opt_str(req, "KeyId")
            grant_id_param = opt_str(req, "GrantId", max_len=128)
            if key_ref is None or grant_id_param is None:
                raise KmsError(
                    "ValidationException", "Specify a GrantToken, or both a KeyId and a GrantId."
                )
            key = self._resolve(key_ref, caller, allow_alias=False)
            g.check_grant_id(grant_id_param)
            grant = self._ks.grants.get(grant_id_param)
            if grant is None or grant.key_id != key.key_id:
                raise KmsError("NotFoundException", f"Grant ID {grant_id_param} not found")
        key = self._ks.keys[grant.key_id]
        ctx.touch(self._arn(key))
        ctx.extra["grantId"] = grant.grant_id
        allowed = (
            (key.kind == KIND_CUSTOMER and self._is_admin(caller))
            or (grant.retiring is not None and grant.retiring == caller.principal)
            or (grant.grantee == caller.principal and "RetireGrant" in grant.operations)
            # The service retires the grants it made on its own keys (a deleted broker's).
            or (key.kind in (KIND_AWS, KIND_OWNED) and caller.via_service == self._mq_service)
        )
        if not allowed:
            raise self._denied(caller, "RetireGrant", key)
        self._dry_run(req)
        del self._ks.grants[grant.grant_id]
        self._ks.save()
        return {}

    def _revoke_grant(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=False)
        ctx.touch(self._arn(key))
        self._manage(caller, key, "RevokeGrant")
        grant_id = req_str(req, "GrantId", max_len=128)
        g.check_grant_id(grant_id)
        ctx.extra["grantId"] = grant_id
        grant = self._ks.grants.get(grant_id)
        if grant is None or grant.key_id != key.key_id:
            raise KmsError("NotFoundException", f"Grant ID {grant_id} not found")
        self._dry_run(req)
        del self._ks.grants[grant_id]
        self._ks.save()
        return {}
