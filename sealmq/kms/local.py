"""A minimal in-process key service with one service-owned key.

It stands in for the full AWS-KMS-compatible key service until that exists, and
speaks the store's ``KeyProvider`` shape (``key_id``, ``generate_data_key``,
``decrypt_data_key``) without importing anything of sealmq.

On disk, in ``keys_dir`` (0700):

- ``root.key`` (0600): 32 random bytes, the root key.
- ``keystore.sealed`` (0600): the service-owned key's versions (id, version
  number, 256-bit material) as JSON, sealed with AES-256-GCM under the root key.

A wrapped data key is ``header || nonce || AES-256-GCM(material, dek)`` where the
header names the format, the key id and the key version (so rotation can add
versions later), and the associated data is the header followed by the
encryption context, length-prefixed and sorted by key. Nonces are random: one
key version must wrap well under 2**32 data keys (NIST SP 800-38D 8.3), which
the rotation of the full key service will enforce; the store asks for one data
key per journal segment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KeyServiceError", "LocalKeyService"]

ROOT_KEY_FILE = "root.key"
KEYSTORE_FILE = "keystore.sealed"

_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEYSTORE_MAGIC = b"SEALMQKS"
_KEYSTORE_VERSION = 1
_KEYSTORE_HEAD = struct.Struct(">8sH")
_BLOB_MAGIC = b"SMQK"
_BLOB_VERSION = 1
_BLOB_HEAD = struct.Struct(">4sBH")  # magic, format version, key-id length
_U32 = struct.Struct(">I")


class KeyServiceError(Exception):
    """The key service refused or failed: unreadable key files, a bad blob, a wrong context."""


def _encode_context(context: Mapping[str, str]) -> bytes:
    parts = [_U32.pack(len(context))]
    for key in sorted(context):
        k, v = key.encode(), context[key].encode()
        parts += [_U32.pack(len(k)), k, _U32.pack(len(v)), v]
    return b"".join(parts)


class LocalKeyService:
    """One service-owned key, its material sealed under a root key in ``keys_dir``.

    The files are created on first use; later instances load them. Methods are
    synchronous and thread-safe.
    """

    def __init__(self, keys_dir: Path) -> None:
        self._dir = Path(keys_dir)
        _make_private_dir(self._dir)
        root_path = self._dir / ROOT_KEY_FILE
        if not root_path.exists() and (self._dir / KEYSTORE_FILE).exists():
            raise KeyServiceError(f"{root_path} is missing; the keystore cannot be unsealed")
        root = _load_or_create_root_key(root_path)
        self._key_id, self._versions = _load_or_create_keystore(
            self._dir / KEYSTORE_FILE, AESGCM(root)
        )
        self._current = max(self._versions)
        self._aeads = {v: AESGCM(m) for v, m in self._versions.items()}

    @property
    def key_id(self) -> str:
        return self._key_id

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh random 32-byte data key and its wrapping under the current key version."""
        dek = os.urandom(_KEY_BYTES)
        header = self._blob_header(self._current)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._current].encrypt(nonce, dek, header + _encode_context(context))
        return dek, header + nonce + sealed

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key in ``wrapped``; raises unless ``context`` is the one it was made with."""
        wrapped = bytes(wrapped)
        if len(wrapped) < _BLOB_HEAD.size:
            raise KeyServiceError("wrapped data key is truncated")
        magic, fmt, id_len = _BLOB_HEAD.unpack_from(wrapped)
        if magic != _BLOB_MAGIC or fmt != _BLOB_VERSION:
            raise KeyServiceError("not a wrapped data key of this key service")
        pos = _BLOB_HEAD.size
        key_id = wrapped[pos : pos + id_len].decode("utf-8", "replace")
        pos += id_len
        if key_id != self._key_id:
            raise KeyServiceError(f"data key was wrapped by another key ({key_id})")
        if len(wrapped) < pos + 4 + _NONCE_BYTES + _KEY_BYTES + 16:
            raise KeyServiceError("wrapped data key is truncated")
        (version,) = _U32.unpack_from(wrapped, pos)
        pos += 4
        aead = self._aeads.get(version)
        if aead is None:
            raise KeyServiceError(f"unknown key version {version}")
        nonce = wrapped[pos : pos + _NONCE_BYTES]
        try:
            return aead.decrypt(
                nonce, wrapped[pos + _NONCE_BYTES :], wrapped[:pos] + _encode_context(context)
            )
        except InvalidTag:
            raise KeyServiceError(
                "cannot unwrap data key: encryption context mismatch or damaged blob"
            ) from None

    def _blob_header(self, version: int) -> bytes:
        key_id = self._key_id.encode()
        head = _BLOB_HEAD.pack(_BLOB_MAGIC, _BLOB_VERSION, len(key_id))
        return head + key_id + _U32.pack(version)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)


def _write_new_file(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600) holding ``data``, atomically; False if it already exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() rather than rename(): never replaces a file another process made first.
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _read_private_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & 0o077:
                raise KeyServiceError(f"{path} is accessible by group or others; chmod 600 it")
            return f.read()
    except OSError as exc:
        raise KeyServiceError(f"cannot read {path}: {exc.strerror}") from exc


def _load_or_create_root_key(path: Path) -> bytes:
    if not path.exists():
        _write_new_file(path, os.urandom(_KEY_BYTES))
    root = _read_private_file(path)
    if len(root) != _KEY_BYTES:
        raise KeyServiceError(f"{path} does not hold a 256-bit key")
    return root


def _load_or_create_keystore(path: Path, root: AESGCM) -> tuple[str, dict[int, bytes]]:
    aad = _KEYSTORE_HEAD.pack(_KEYSTORE_MAGIC, _KEYSTORE_VERSION)
    if not path.exists():
        doc = {
            "key_id": str(uuid.uuid4()),
            "versions": [
                {"version": 1, "material": base64.b64encode(os.urandom(_KEY_BYTES)).decode()}
            ],
        }
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(doc).encode()
        _write_new_file(path, aad + nonce + root.encrypt(nonce, plain, aad))
    blob = _read_private_file(path)
    if blob[: _KEYSTORE_HEAD.size] != aad:
        raise KeyServiceError(f"{path} is not a keystore of this version")
    nonce = blob[_KEYSTORE_HEAD.size : _KEYSTORE_HEAD.size + _NONCE_BYTES]
    try:
        plain = root.decrypt(nonce, blob[_KEYSTORE_HEAD.size + _NONCE_BYTES :], aad)
    except InvalidTag:
        raise KeyServiceError(f"{path} cannot be unsealed with this root key") from None
    try:
        doc = json.loads(plain)
        versions = {int(v["version"]): base64.b64decode(v["material"]) for v in doc["versions"]}
        key_id = str(doc["key_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyServiceError(f"{path} is malformed") from exc
    if not versions or any(len(m) != _KEY_BYTES for m in versions.values()):
        raise KeyServiceError(f"{path} holds no usable key material")
    return key_id, versions
