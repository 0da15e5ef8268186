"""The ciphertext blob of the key service, and the encoding of encryption contexts.

A blob (format 1, the one the older one-key service wrote too, so data keys it
wrapped still open here)::

    b"SMQK" | u8 format = 1 | u16 len(key id) | key id (UTF-8) | u32 key version
    | 12-byte random nonce | AES-256-GCM ciphertext and 16-byte tag

The associated data is everything before the nonce (so the key id and version
cannot be swapped) followed by the encryption context, encoded as a u32 count and
then, sorted by key, each key and value as a u32 length and UTF-8 bytes. Length
prefixes, never concatenation: ``{"ab": "c"}`` and ``{"a": "bc"}`` differ.

Random nonces: one key version must seal well under 2**32 messages (NIST SP
800-38D 8.3); versions rotate yearly and data keys are wrapped once per journal
segment, many orders of magnitude below that.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "MAX_CIPHERTEXT_BYTES",
    "BlobHeader",
    "InvalidBlob",
    "encode_context",
    "open_blob",
    "parse_header",
    "seal_blob",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: KMS's own limit on a CiphertextBlob (CiphertextType max 6144).
MAX_CIPHERTEXT_BYTES = 6144

_MAGIC = b"SMQK"
_FORMAT = 1
_HEAD = struct.Struct(">4sBH")  # magic, format, key-id length
_U32 = struct.Struct(">I")


class InvalidBlob(Exception):
    """Not a blob of this service, damaged, or sealed under another context."""


@dataclass(frozen=True, slots=True)
class BlobHeader:
    key_id: str
    version: int
    #: Bytes of the header, bound into the associated data.
    raw: bytes


def encode_context(context: Mapping[str, str]) -> bytes:
    """The encryption context as length-prefixed bytes, sorted by key."""
    parts = [_U32.pack(len(context))]
    for key in sorted(context):
        k, v = key.encode(), context[key].encode()
        parts += [_U32.pack(len(k)), k, _U32.pack(len(v)), v]
    return b"".join(parts)


def _header(key_id: str, version: int) -> bytes:
    raw_id = key_id.encode()
    return _HEAD.pack(_MAGIC, _FORMAT, len(raw_id)) + raw_id + _U32.pack(version)


def seal_blob(
    material: bytes, key_id: str, version: int, plaintext: bytes, context: Mapping[str, str]
) -> bytes:
    """Encrypt ``plaintext`` under one key version, bound to ``context``."""
    header = _header(key_id, version)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(material).encrypt(nonce, plaintext, header + encode_context(context))
    return header + nonce + sealed


def parse_header(blob: bytes) -> BlobHeader:
    """The key id and version a blob names; raises :class:`InvalidBlob` if malformed."""
    if len(blob) < _HEAD.size:
        raise InvalidBlob("ciphertext is truncated")
    magic, fmt, id_len = _HEAD.unpack_from(blob)
    if magic != _MAGIC or fmt != _FORMAT:
        raise InvalidBlob("not a ciphertext of this key service")
    end = _HEAD.size + id_len
    if len(blob) < end + _U32.size + NONCE_BYTES + TAG_BYTES:
        raise InvalidBlob("ciphertext is truncated")
    try:
        key_id = blob[_HEAD.size : end].decode()
    except UnicodeDecodeError:
        raise InvalidBlob("ciphertext names no valid key id") from None
    (version,) = _U32.unpack_from(blob, end)
    return BlobHeader(key_id, version, bytes(blob[: end + _U32.size]))


def open_blob(
    material: bytes, header: BlobHeader, blob: bytes, context: Mapping[str, str]
) -> bytes:
    """The plaintext of ``blob``; raises :class:`InvalidBlob` on any mismatch."""
    body = blob[len(header.raw) :]
    nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
    try:
        return AESGCM(material).decrypt(nonce, sealed, header.raw + encode_context(context))
    except InvalidTag:
        raise InvalidBlob("encryption context mismatch or damaged ciphertext") from None
