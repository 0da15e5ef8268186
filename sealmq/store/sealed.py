"""Small sealed state files (the user list, broker settings): whole-file envelope encryption.

A file is ``preamble || header || nonce || AES-256-GCM(dek, data)`` where the
header holds the key id and the wrapped data key, and the associated data binds
the preamble, the header and the caller's encryption context. Every write uses
a fresh data key and replaces the file atomically (temporary file, fsync,
rename, fsync of the folder), created 0600.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.store.crypto import NONCE_BYTES, TAG_BYTES, encode_context, encode_fields
from sealmq.store.errors import CorruptRecordError, KeyUnavailableError
from sealmq.store.files import (
    FILE_MODE,
    fsync_dir,
    make_private_dir,
    remove_quietly,
    write_all,
)
from sealmq.store.keys import KeyProvider, decrypt_data_key, generate_data_key

__all__ = ["SEALED_MAGIC", "read_sealed", "write_sealed"]

SEALED_MAGIC = b"SEALMQS\x00"
_FORMAT = 1
_PREAMBLE = struct.Struct(">8sHI")  # magic, format, header length
_U32 = struct.Struct(">I")
_MAX_HEADER = 64 * 1024


def write_sealed(
    path: Path, data: bytes, key_provider: KeyProvider, context: Mapping[str, str]
) -> None:
    """Replace ``path`` with ``data`` sealed under a fresh data key bound to ``context``.

    Blocking (file I/O and a key-provider call): run it off the event loop.
    Raises :class:`KeyUnavailableError` or ``OSError``.
    """
    path = Path(path)
    make_private_dir(path.parent)
    dek, wrapped = generate_data_key(key_provider, context)
    try:
        key_id = str(key_provider.key_id)
    except Exception as exc:
        raise KeyUnavailableError(f"key id unavailable: {type(exc).__name__}") from exc
    header = encode_fields(key_id.encode(), wrapped)
    preamble = _PREAMBLE.pack(SEALED_MAGIC, _FORMAT, len(header)) + header
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(dek).encrypt(nonce, data, _aad(preamble, context))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            write_all(fd, preamble + nonce + sealed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


def read_sealed(path: Path, key_provider: KeyProvider, context: Mapping[str, str]) -> bytes:
    """The data of a file written by :func:`write_sealed` with the same ``context``.

    Raises ``FileNotFoundError`` if there is none, :class:`CorruptRecordError` if it
    was damaged or sealed for another context, :class:`KeyUnavailableError`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _PREAMBLE.size:
        raise CorruptRecordError("sealed file is truncated", path, 0)
    magic, fmt, header_len = _PREAMBLE.unpack_from(blob)
    if magic != SEALED_MAGIC or fmt != _FORMAT or header_len > _MAX_HEADER:
        raise CorruptRecordError("not a sealed file of this version", path, 0)
    end = _PREAMBLE.size + header_len
    if len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise CorruptRecordError("sealed file is truncated", path, 0)
    header = blob[_PREAMBLE.size : end]
    if len(header) < 4:
        raise CorruptRecordError("sealed file header is malformed", path, 0)
    (id_len,) = _U32.unpack_from(header)
    pos = 4 + id_len
    if pos + 4 > len(header) or _U32.unpack_from(header, pos)[0] != len(header) - pos - 4:
        raise CorruptRecordError("sealed file header is malformed", path, 0)
    wrapped = header[pos + 4 :]
    dek = decrypt_data_key(key_provider, wrapped, context)
    try:
        return AESGCM(dek).decrypt(
            blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :], _aad(blob[:end], context)
        )
    except InvalidTag:
        raise CorruptRecordError("sealed file failed authentication", path, end) from None


def _aad(preamble_and_header: bytes, context: Mapping[str, str]) -> bytes:
    return encode_fields(b"sealmq-sealed-file", preamble_and_header, encode_context(context))
