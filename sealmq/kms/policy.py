"""Key policies: validated when set, evaluated on every call, as AWS KMS does.

:func:`parse_policy` turns a policy document into statements or raises
``MalformedPolicyDocumentException`` naming what is wrong (a statement without
``Effect``, ``Principal``, ``Action`` or ``Resource``, an action outside ``kms:``,
an unknown condition operator or key). :func:`evaluate` answers one request:
:data:`DENY` if a Deny statement matches (an explicit deny wins over every allow,
grants included), else :data:`ALLOW` if an Allow statement does, else None (the
service then looks for a grant, and refuses without one).

Principals. ``"*"`` is anyone. A role, user or assumed-role ARN is that principal.
The account (``arn:aws:iam::ACCOUNT:root`` or the bare 12-digit id) means, in an
Allow, "the account's IAM policies decide" (the default key policy): this service
has no IAM, and the only identity of the account that IAM allows everything is
the account's root user, the admin of ``credentials``; other principals of the
account hold no identity-based permission, so they need a statement naming them
or a grant (as the broker's storage principal uses its grant). In a Deny, the
account means every principal of it, as in AWS.

Condition keys understood: ``kms:ViaService``, ``kms:CallerAccount``,
``kms:EncryptionContext:<key>``, ``kms:EncryptionContextKeys``,
``kms:GrantIsForAWSResource``, ``aws:PrincipalArn``, ``aws:PrincipalAccount``;
operators ``String(Not)Equals(IgnoreCase)``, ``String(Not)Like``, ``Bool``,
``Null``, each with ``...IfExists``, and the ``ForAnyValue:``/``ForAllValues:``
set qualifiers. A policy using any other is refused when it is set, never
silently evaluated as if the condition held.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sealmq.kms.errors import KmsError

__all__ = [
    "ALLOW",
    "DENY",
    "Decision",
    "RequestFacts",
    "Statement",
    "evaluate",
    "parse_policy",
]

ALLOW: Literal["Allow"] = "Allow"
DENY: Literal["Deny"] = "Deny"
Decision = Literal["Allow", "Deny"] | None

_VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_FIELDS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_CONDITION_KEYS = frozenset(
    {
        "kms:viaservice",
        "kms:calleraccount",
        "kms:encryptioncontextkeys",
        "kms:grantisforawsresource",
        "aws:principalarn",
        "aws:principalaccount",
    }
)
_CONTEXT_PREFIX = "kms:encryptioncontext:"
#: Keys whose value is a set (``ForAnyValue:``/``ForAllValues:`` apply).
_MULTI_VALUED = frozenset({"kms:encryptioncontextkeys"})
_OPERATORS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "Bool",
        "Null",
    }
)
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_ARN_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::([0-9]{12}):[A-Za-z0-9+=,.@_/-]+$")


def _malformed(reason: str) -> KmsError:
    return KmsError("MalformedPolicyDocumentException", reason)


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str
    negated: bool
    if_exists: bool
    qualifier: str | None  # "ForAnyValue", "ForAllValues" or None
    key: str  # lower case
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    effect: str
    #: Principal patterns ("*", an ARN, or "account:<id>" for the account); None: NotPrincipal.
    principals: tuple[str, ...]
    not_principal: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a policy may look at in one request."""

    principal: str
    via_service: str | None = None
    encryption_context: Mapping[str, str] | None = None
    #: For grant operations: whether an AWS service makes the grant (True/False); else None.
    grant_for_aws_resource: bool | None = None

    @property
    def account(self) -> str:
        parts = self.principal.split(":")
        return parts[4] if len(parts) > 4 else ""

    def values(self, key: str) -> list[str] | None:
        """The request's values of condition ``key`` (lower case); None when absent."""
        if key == "kms:viaservice":
            return None if self.via_service is None else [self.via_service]
        if key in ("kms:calleraccount", "aws:principalaccount"):
            return [self.account] if self.account else None
        if key == "aws:principalarn":
            return [self.principal]
        if key == "kms:grantisforawsresource":
            if self.grant_for_aws_resource is None:
                return None
            return ["true" if self.grant_for_aws_resource else "false"]
        context = self.encryption_context
        if key == "kms:encryptioncontextkeys":
            return None if not context else list(context)
        if key.startswith(_CONTEXT_PREFIX):
            if context is None:
                return None
            # Context keys are case-sensitive in KMS; the condition key's own case
            # was lowered for lookup, so compare it case-insensitively here.
            wanted = key[len(_CONTEXT_PREFIX) :]
            found = [v for k, v in context.items() if k.lower() == wanted]
            return found or None
        return None


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; nothing else is special."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise _malformed(f"{what} must be a string or a non-empty list of strings")


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if not isinstance(value, Mapping) or not value:
        raise _malformed('Principal must be "*" or an object such as {"AWS": "arn:..."}')
    found: list[str] = []
    for kind, names in value.items():
        if kind == "AWS":
            for name in _strings(names, "Principal.AWS"):
                if name == "*":
                    found.append("*")
                elif _ACCOUNT.match(name):
                    found.append(f"account:{name}")
                else:
                    match = _ARN_PRINCIPAL.match(name)
                    if match is None:
                        raise _malformed(
                            f"Policy contains a statement with one or more invalid principals: "
                            f"{name[:256]}"
                        )
                    if match.group(1) == "iam" and name.endswith(":root"):
                        found.append(f"account:{match.group(2)}")
                    else:
                        found.append(name)
        elif kind == "Service":
            # A service principal (logs.amazonaws.com ...) never calls this service
            # itself: such a statement matches no caller.
            _strings(names, "Principal.Service")
        else:
            raise _malformed(f"Principal type {kind[:64]} is not supported (AWS or Service)")
    return tuple(found)


def _actions(value: Any) -> tuple[re.Pattern[str], ...]:
    patterns: list[re.Pattern[str]] = []
    for action in _strings(value, "Action"):
        if action != "*" and not action.lower().startswith("kms:"):
            raise _malformed(f"Action {action[:128]} is not a kms: action")
        patterns.append(_wildcard(action, ignore_case=True))
    return tuple(patterns)


def _conditions(value: Any) -> tuple[Condition, ...]:
    if not isinstance(value, Mapping):
        raise _malformed("Condition must be an object of operators")
    found: list[Condition] = []
    for raw_operator, block in value.items():
        operator = str(raw_operator)
        qualifier: str | None = None
        for prefix in ("ForAnyValue:", "ForAllValues:"):
            if operator.startswith(prefix):
                qualifier, operator = prefix[:-1], operator[len(prefix) :]
        if_exists = operator.endswith("IfExists")
        if if_exists:
            operator = operator[: -len("IfExists")]
        if operator not in _OPERATORS:
            raise _malformed(f"Condition operator {str(raw_operator)[:64]} is not supported")
        if not isinstance(block, Mapping) or not block:
            raise _malformed(f"Condition {operator} must map condition keys to values")
        for raw_key, raw_values in block.items():
            key = str(raw_key).lower()
            if key not in _CONDITION_KEYS and not (
                key.startswith(_CONTEXT_PREFIX) and len(key) > len(_CONTEXT_PREFIX)
            ):
                raise _malformed(f"Condition key {str(raw_key)[:128]} is not supported")
            if isinstance(raw_values, bool):
                raw_values = "true" if raw_values else "false"
            values = _strings(raw_values, f"Condition {operator} {raw_key}")
            if operator in ("Bool", "Null") and any(
                v.lower() not in ("true", "false") for v in values
            ):
                raise _malformed(f"Condition {operator} {raw_key} takes true or false")
            found.append(
                Condition(
                    operator=operator,
                    negated="Not" in operator,
                    if_exists=if_exists,
                    qualifier=qualifier,
                    key=key,
                    values=tuple(values),
                )
            )
    return tuple(found)


def _statement(raw: Any) -> Statement:
    if not isinstance(raw, Mapping):
        raise _malformed("Each Statement must be an object")
    unknown = sorted(set(raw) - _STATEMENT_FIELDS)
    if unknown:
        raise _malformed(f"Statement field {unknown[0][:64]} is not known")
    effect = raw.get("Effect")
    if effect not in (ALLOW, DENY):
        raise _malformed('Each Statement needs an Effect of "Allow" or "Deny"')
    if ("Principal" in raw) == ("NotPrincipal" in raw):
        raise _malformed("Each Statement of a key policy needs a Principal (or NotPrincipal)")
    if ("Action" in raw) == ("NotAction" in raw):
        raise _malformed("Each Statement needs an Action (or NotAction)")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise _malformed('Each Statement needs a Resource (or NotResource), e.g. "*"')
    resources = _strings(raw.get("Resource", raw.get("NotResource")), "Resource")
    return Statement(
        effect=str(effect),
        principals=_principals(raw.get("Principal", raw.get("NotPrincipal"))),
        not_principal="NotPrincipal" in raw,
        actions=_actions(raw.get("Action", raw.get("NotAction"))),
        not_action="NotAction" in raw,
        resources=tuple(_wildcard(r, ignore_case=False) for r in resources),
        not_resource="NotResource" in raw,
        conditions=_conditions(raw.get("Condition", {})),
    )


@functools.lru_cache(maxsize=256)
def parse_policy(text: str) -> tuple[Statement, ...]:
    """The statements of a key policy; ``MalformedPolicyDocumentException`` if it is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise _malformed("The policy is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise _malformed("The policy must be a JSON object.")
    unknown = sorted(set(doc) - {"Version", "Id", "Statement"})
    if unknown:
        raise _malformed(f"Policy field {unknown[0][:64]} is not known")
    if "Version" in doc and doc["Version"] not in _VERSIONS:
        raise _malformed("The policy Version must be 2012-10-17")
    raw = doc.get("Statement")
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _malformed("The policy has no Statement element.")
    return tuple(_statement(s) for s in raw)


def _principal_matches(statement: Statement, facts: RequestFacts) -> bool:
    matched = False
    for pattern in statement.principals:
        if pattern == "*" or pattern == facts.principal:
            matched = True
        elif pattern.startswith("account:"):
            account = pattern[len("account:") :]
            if statement.effect == DENY or statement.not_principal:
                # A Deny naming the account applies to every principal of it.
                matched = facts.account == account
            else:
                # "The account's IAM decides": only its root user has IAM permissions.
                matched = facts.principal == f"arn:aws:iam::{account}:root"
        if matched:
            break
    return matched != statement.not_principal


def _one_value(operator: str, wanted: str, have: str) -> bool:
    if operator in ("StringEquals", "StringNotEquals"):
        return have == wanted
    if operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return have.lower() == wanted.lower()
    if operator in ("StringLike", "StringNotLike"):
        return _wildcard(wanted, ignore_case=False).match(have) is not None
    return have.lower() == wanted.lower()  # Bool


def _condition_holds(condition: Condition, facts: RequestFacts) -> bool:
    have = facts.values(condition.key)
    if condition.operator == "Null":
        return (have is None) == (condition.values[0].lower() == "true")
    if have is None:
        if condition.if_exists or condition.qualifier == "ForAllValues":
            return True
        return condition.negated if condition.qualifier is None else False

    def hit(value: str) -> bool:
        found = any(_one_value(condition.operator, w, value) for w in condition.values)
        return not found if condition.negated else found

    if condition.qualifier == "ForAllValues":
        return all(hit(value) for value in have)
    if condition.qualifier == "ForAnyValue":
        return any(hit(value) for value in have)
    found = any(
        _one_value(condition.operator, w, value) for w in condition.values for value in have
    )
    return not found if condition.negated else found


def _statement_matches(
    statement: Statement, action: str, resource: str, facts: RequestFacts
) -> bool:
    if not _principal_matches(statement, facts):
        return False
    name = f"kms:{action}"
    if any(p.match(name) for p in statement.actions) == statement.not_action:
        return False
    if any(p.match(resource) for p in statement.resources) == statement.not_resource:
        return False
    return all(_condition_holds(c, facts) for c in statement.conditions)


def evaluate(
    statements: Sequence[Statement], action: str, resource: str, facts: RequestFacts
) -> Decision:
    """:data:`DENY`, :data:`ALLOW` or None (no statement applies) for ``kms:<action>``."""
    allowed = False
    for statement in statements:
        if _statement_matches(statement, action, resource, facts):
            if statement.effect == DENY:
                return DENY
            allowed = True
    return ALLOW if allowed else None
