"""Small crypto helpers shared by the journal and sealed files.

Everything that is bound into AES-GCM associated data is encoded with length
prefixes, never by plain concatenation, so that two different field lists can
never produce the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = [
    "DEK_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "counter_nonce",
    "encode_context",
    "encode_fields",
]

#: AES-256.
DEK_BYTES = 32
#: The 96-bit nonce GCM is specified for (NIST SP 800-38D 8.2.1).
NONCE_BYTES = 12
#: Full 128-bit GCM tag; it is also the record's checksum.
TAG_BYTES = 16

_U32 = struct.Struct(">I")
# 32 zero bits of fixed field then a 64-bit counter (SP 800-38D 8.2.1, deterministic
# construction). The counter is unique per key because every segment gets a fresh key.
_NONCE = struct.Struct(">4xQ")


def encode_fields(*fields: bytes) -> bytes:
    """Each field as a 32-bit big-endian length followed by its bytes."""
    return b"".join(_U32.pack(len(f)) + f for f in fields)


def encode_context(context: Mapping[str, str]) -> bytes:
    """An encryption context as length-prefixed ``key, value`` pairs sorted by key."""
    parts = [_U32.pack(len(context))]
    for key in sorted(context):
        parts.append(encode_fields(key.encode(), context[key].encode()))
    return b"".join(parts)


def counter_nonce(counter: int) -> bytes:
    """The GCM nonce for record number ``counter`` under one data key."""
    return _NONCE.pack(counter)
