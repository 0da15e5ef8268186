"""Folders as the one-key service before the full key service left them, for migration tests.

Such a ``keys/`` folder holds ``root.key`` (32 random bytes) and
``keystore.sealed``: ``b"SEALMQKS" | u16 1 | nonce | AES-256-GCM(JSON {key_id,
versions})`` under the root key, the 10-byte header as associated data. Only the
tests write this format now; :mod:`sealmq.kms.keystore` reads (migrates) it.
Data keys of that service are ordinary :mod:`sealmq.kms.ciphertext` blobs.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealmq.kms.ciphertext import open_blob, parse_header, seal_blob
from sealmq.kms.keystore import LEGACY_KEYSTORE_FILE, ROOT_KEY_FILE

_HEAD = struct.Struct(">8sH").pack(b"SEALMQKS", 1)


class LegacyKeys:
    """A legacy ``keys/`` folder, written once, and a KeyProvider of its one key."""

    def __init__(self, keys_dir: Path) -> None:
        keys_dir.mkdir(mode=0o700, parents=True)
        root = os.urandom(32)
        self.key_id = str(uuid.uuid4())
        self.material = os.urandom(32)
        doc = {
            "key_id": self.key_id,
            "versions": [{"version": 1, "material": base64.b64encode(self.material).decode()}],
        }
        nonce = os.urandom(12)
        sealed = _HEAD + nonce + AESGCM(root).encrypt(nonce, json.dumps(doc).encode(), _HEAD)
        for name, data in ((ROOT_KEY_FILE, root), (LEGACY_KEYSTORE_FILE, sealed)):
            fd = os.open(keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        dek = os.urandom(32)
        return dek, seal_blob(self.material, self.key_id, 1, dek, context)

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return open_blob(self.material, parse_header(wrapped), wrapped, context)
