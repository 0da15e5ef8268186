"""Alias operations: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from typing import Any

from sealmq.kms.core import (
    ALIAS_NAME_PATTERN,
    SERVICE_MANAGED_ALIAS,
    CallContext,
    Caller,
    ServiceCore,
)
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import AliasRecord, KeyRecord
from sealmq.kms.params import Request, opt_str, page, req_str

__all__ = ["AliasOperations"]


class AliasOperations(ServiceCore):
    # -- aliases ------------------------------------------------------------------------

    def _alias_name(self, req: Request) -> str:
        name = req_str(req, "AliasName", max_len=256)
        if not name.startswith("alias/"):
            raise KmsError(
                "ValidationException",
                'Alias must start with the prefix "alias/". Please see '
                "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
            )
        if name.startswith("alias/aws/"):
            raise KmsError("NotAuthorizedException", "")
        if not ALIAS_NAME_PATTERN.match(name):
            raise KmsError(
                "InvalidAliasNameException",
                f"Alias name {name} contains characters that are not valid.",
            )
        return name

    def _alias_target(
        self, req: Request, caller: Caller, ctx: CallContext, action: str
    ) -> KeyRecord:
        ref = req_str(req, "TargetKeyId")
        if ref.startswith("alias/") or ":alias/" in ref:
            raise KmsError("ValidationException", "Aliases must refer to keys. Not aliases")
        key = self._resolve(ref, caller, allow_alias=False)
        ctx.touch(self._arn(key))
        self._manage(caller, key, action)
        self._require_not_pending(key)
        return key

    def _create_alias(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "CreateAlias", None)
        name = self._alias_name(req)
        key = self._alias_target(req, caller, ctx, "CreateAlias")
        if name in self._ks.aliases:
            raise KmsError(
                "AlreadyExistsException",
                f"An alias with the name {self._ks.alias_arn(name)} already exists",
            )
        now = self._clock()
        self._ks.aliases[name] = AliasRecord(name, key.key_id, now, now)
        self._ks.save()
        return {}

    def _update_alias(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "UpdateAlias", None)
        name = self._alias_name(req)
        alias = self._ks.aliases.get(name)
        if alias is None:
            raise KmsError("NotFoundException", f"Alias {self._ks.alias_arn(name)} is not found.")
        key = self._alias_target(req, caller, ctx, "UpdateAlias")
        alias.key_id = key.key_id
        alias.updated = self._clock()
        self._ks.save()
        return {}

    def _delete_alias(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "DeleteAlias", None)
        name = self._alias_name(req)
        alias = self._ks.aliases.get(name)
        if alias is None:
            raise KmsError("NotFoundException", f"Alias {self._ks.alias_arn(name)} is not found.")
        del self._ks.aliases[name]
        self._ks.save()
        return {}

    def _list_aliases(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if not self._is_admin(caller):
            raise self._denied(caller, "ListAliases", None)
        key_ref = opt_str(req, "KeyId")
        entries: list[dict[str, Any]] = []
        if key_ref is not None:
            key = self._resolve(key_ref, caller, allow_alias=False)
            aliases = [a for a in self._ks.aliases.values() if a.key_id == key.key_id]
        else:
            aliases = list(self._ks.aliases.values())
            if SERVICE_MANAGED_ALIAS not in self._ks.aliases:
                # KMS lists the predefined AWS aliases even before their key exists.
                entries.append(
                    {
                        "AliasName": SERVICE_MANAGED_ALIAS,
                        "AliasArn": self._ks.alias_arn(SERVICE_MANAGED_ALIAS),
                    }
                )
        for alias in aliases:
            entries.append(
                {
                    "AliasName": alias.name,
                    "AliasArn": self._ks.alias_arn(alias.name),
                    "TargetKeyId": alias.key_id,
                    "CreationDate": alias.created,
                    "LastUpdatedDate": alias.updated,
                }
            )
        entries.sort(key=lambda e: str(e["AliasName"]))
        chunk, paging = page(req, entries)
        return {"Aliases": chunk, **paging}
