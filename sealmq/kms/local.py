"""The service-owned key of a keystore folder as a plain ``KeyProvider``, without the service.

For tests and tools that need the store's narrow interface (``key_id``,
``generate_data_key``, ``decrypt_data_key``) over a ``keys/`` folder and nothing
else: no account, grants, policies or audit trail. The folder is opened by
:class:`~sealmq.kms.keystore.Keystore` (created on first use; a folder of the
older one-key format, ``keystore.sealed``, is migrated there), and data keys are
ordinary blobs of :mod:`sealmq.kms.ciphertext` under the service-owned key, so
the key service of the same folder unwraps them and the other way round. The
broker itself always goes through :class:`~sealmq.kms.service.KeyService`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sealmq.kms.ciphertext import KEY_BYTES, InvalidBlob, open_blob, parse_header, seal_blob
from sealmq.kms.keystore import KEYSTORE_FILE, LEGACY_KEYSTORE_FILE, ROOT_KEY_FILE, Keystore
from sealmq.kms.keystore import KeystoreError as KeyServiceError

__all__ = [
    "KEYSTORE_FILE",
    "LEGACY_KEYSTORE_FILE",
    "ROOT_KEY_FILE",
    "KeyServiceError",
    "LocalKeyService",
]


class LocalKeyService:
    """Data keys under the service-owned key of the keystore in ``keys_dir``.

    Raises :class:`KeyServiceError` (the keystore's error) when the folder cannot
    be opened, and on any blob that is damaged, of another key, or bound to
    another encryption context. Thread-safe.
    """

    def __init__(self, keys_dir: Path) -> None:
        self._keystore = Keystore.open(Path(keys_dir))

    @property
    def key_id(self) -> str:
        return self._keystore.service_owned_key_id

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh random 32-byte data key and its wrapping under the key's current version."""
        dek = os.urandom(KEY_BYTES)
        with self._keystore.lock:
            version = self._keystore.keys[self.key_id].current
            return dek, seal_blob(version.material, self.key_id, version.number, dek, context)

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key in ``wrapped``; raises unless ``context`` is the one it was made with."""
        wrapped = bytes(wrapped)
        try:
            header = parse_header(wrapped)
        except InvalidBlob:
            raise KeyServiceError("not a wrapped data key of this key service") from None
        if header.key_id != self.key_id:
            raise KeyServiceError(f"data key was wrapped by another key ({header.key_id})")
        with self._keystore.lock:
            version = self._keystore.keys[self.key_id].version(header.version)
        if version is None:
            raise KeyServiceError(f"unknown key version {header.version}")
        try:
            return open_blob(version.material, header, wrapped, context)
        except InvalidBlob:
            raise KeyServiceError(
                "cannot unwrap data key: encryption context mismatch or damaged blob"
            ) from None
