"""Grants: which operations they may allow, their constraints, and their tokens.

A grant lets ``GranteePrincipal`` call its ``Operations`` on one key, optionally
only with an encryption context that equals (``EncryptionContextEquals``) or
contains (``EncryptionContextSubset``) given pairs. Grants take effect at once
(no eventual consistency here), and so does revoking or retiring one.

A grant token is ``base64url(0x02 | grant id (32 bytes) | key id (16 bytes) | MAC)``,
the MAC an HMAC-SHA256 of grant and key id under a key derived from the key's
first material: opaque to clients, as KMS's are, and checked wherever it is
accepted (``GrantTokens`` of every operation, ``RetireGrant``). A token that is
not one this service made for a grant *on the key the request uses* is refused
with ``InvalidGrantTokenException``; an authentic token of a grant since revoked
or retired adds nothing, so the call is decided as without it (AccessDenied when
nothing else allows it). Tokens made before this format (``0x01 | grant id |
secret``) are accepted while their grant exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import NamedTuple

from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import GrantRecord

__all__ = [
    "CONTEXT_OPERATIONS",
    "GRANT_OPERATIONS",
    "GrantToken",
    "check_grant_id",
    "check_operations",
    "constraints_allow",
    "is_at_least_as_strict",
    "make_token",
    "new_grant_id",
    "parse_constraints",
    "parse_token",
    "token_key_id",
]

#: Grant operations that make sense on a symmetric encryption key.
GRANT_OPERATIONS = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
        "CreateGrant",
        "RetireGrant",
        "DescribeKey",
    }
)
#: Every GrantOperation KMS knows; those outside GRANT_OPERATIONS need another key type.
_ALL_OPERATIONS = GRANT_OPERATIONS | {
    "Sign",
    "Verify",
    "GetPublicKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
}
#: Operations that take an encryption context, the only ones a constraint can apply to.
CONTEXT_OPERATIONS = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
        "CreateGrant",
    }
)

_TOKEN_VERSION = 2
_LEGACY_TOKEN_VERSION = 1
_GRANT_ID = re.compile(r"^[0-9a-f]{64}$")
_CONSTRAINT_KINDS = ("EncryptionContextEquals", "EncryptionContextSubset")


def new_grant_id() -> str:
    return secrets.token_hex(32)


def check_grant_id(grant_id: str) -> None:
    if not _GRANT_ID.match(grant_id):
        raise KmsError("InvalidGrantIdException", f"Invalid grant ID {grant_id[:128]}")


class GrantToken(NamedTuple):
    """What a grant token says: its grant, the key it was made for (None: format 1), a proof."""

    grant_id: str
    key_id: str | None
    proof: bytes


def _mac(material: bytes, grant_id: str, key_id: str) -> bytes:
    token_key = hmac.new(material, b"sealmq grant token v2", hashlib.sha256).digest()
    return hmac.new(
        token_key, bytes.fromhex(grant_id) + uuid.UUID(key_id).bytes, hashlib.sha256
    ).digest()


def make_token(grant: GrantRecord, key_material: bytes) -> str:
    """The token of ``grant``; ``key_material`` is its key's first version's material."""
    raw = (
        bytes([_TOKEN_VERSION])
        + bytes.fromhex(grant.grant_id)
        + uuid.UUID(grant.key_id).bytes
        + _mac(key_material, grant.grant_id, grant.key_id)
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(token: str) -> GrantToken:
    """What ``token`` claims; ``InvalidGrantTokenException`` if it is not of a known form."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 81 and raw[0] == _TOKEN_VERSION:
        return GrantToken(raw[1:33].hex(), str(uuid.UUID(bytes=raw[33:49])), raw[49:])
    if len(raw) == 65 and raw[0] == _LEGACY_TOKEN_VERSION:
        return GrantToken(raw[1:33].hex(), None, raw[33:])
    raise KmsError("InvalidGrantTokenException", "The grant token is not valid.")


def token_key_id(
    token: GrantToken, grant: GrantRecord | None, key_material: bytes | None
) -> str | None:
    """The key ``token`` authentically names, or None if this service did not make it.

    ``grant`` is the grant it names (None if gone); ``key_material`` the first
    material of the key it names (None if that key is gone).
    """
    if token.key_id is None:
        if grant is None or not hmac.compare_digest(grant.token_secret, token.proof.hex()):
            return None
        return grant.key_id
    if key_material is None:
        return None
    if not hmac.compare_digest(_mac(key_material, token.grant_id, token.key_id), token.proof):
        return None
    return token.key_id


def parse_constraints(value: object, operations: list[str]) -> dict[str, dict[str, str]] | None:
    """Validate ``Constraints`` of CreateGrant against its ``Operations``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise KmsError("SerializationException", "'Constraints' must be an object")
    unknown = set(value) - set(_CONSTRAINT_KINDS)
    if unknown:
        raise KmsError("ValidationException", f"Unsupported grant constraint {sorted(unknown)[0]}")
    found: dict[str, dict[str, str]] = {}
    for kind in _CONSTRAINT_KINDS:
        pairs = value.get(kind)
        if pairs is None:
            continue
        if not isinstance(pairs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()
        ):
            raise KmsError("SerializationException", f"'{kind}' must map strings to strings")
        found[kind] = dict(pairs)
    if not found:
        return None
    if len(found) > 1:
        raise KmsError(
            "ValidationException", "A grant can have only one encryption context constraint."
        )
    without_context = sorted(set(operations) - CONTEXT_OPERATIONS)
    if without_context:
        raise KmsError(
            "ValidationException",
            f"Encryption context grant constraints are not supported for {without_context[0]}.",
        )
    return found


def constraints_allow(
    constraints: Mapping[str, Mapping[str, str]] | None, context: Mapping[str, str] | None
) -> bool:
    """Whether a request with ``context`` satisfies a grant's constraints.

    ``context`` is None for an operation without an encryption context, which a
    constrained grant never allows.
    """
    if not constraints:
        return True
    if context is None:
        return False
    equals = constraints.get("EncryptionContextEquals")
    if equals is not None:
        return dict(context) == dict(equals)
    subset = constraints.get("EncryptionContextSubset") or {}
    return all(context.get(k) == v for k, v in subset.items())


def is_at_least_as_strict(
    child: Mapping[str, Mapping[str, str]] | None, parent: Mapping[str, Mapping[str, str]] | None
) -> bool:
    """Whether a grant made through a grant keeps (at least) the parent's constraints."""
    if not parent:
        return True
    if not child:
        return False
    parent_equals = parent.get("EncryptionContextEquals")
    child_equals = child.get("EncryptionContextEquals")
    if parent_equals is not None:
        return child_equals is not None and dict(child_equals) == dict(parent_equals)
    required = parent.get("EncryptionContextSubset") or {}
    pairs = child_equals if child_equals is not None else child.get("EncryptionContextSubset")
    return pairs is not None and all(pairs.get(k) == v for k, v in required.items())


def check_operations(operations: list[str]) -> None:
    if not operations:
        raise KmsError(
            "ValidationException",
            "1 validation error detected: Value '[]' at 'operations' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1",
        )
    for op in operations:
        if op not in _ALL_OPERATIONS:
            raise KmsError(
                "ValidationException",
                f"1 validation error detected: Value '[{op}]' at 'operations' failed to satisfy "
                "constraint: Member must satisfy enum value set",
            )
        if op not in GRANT_OPERATIONS:
            raise KmsError(
                "ValidationException",
                f"Grant operation {op} is not valid for a symmetric encryption KMS key.",
            )
