"""Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateRandom.

Every one checks the key's state (Disabled -> DisabledException, PendingDeletion ->
KMSInvalidStateException), Decrypt included, after the caller's right to use it.
"""

from __future__ import annotations

import os
from typing import Any

from sealmq.kms.ciphertext import MAX_CIPHERTEXT_BYTES
from sealmq.kms.core import CallContext, Caller, ServiceCore
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import KeyRecord
from sealmq.kms.params import (
    Request,
    opt_context,
    opt_int,
    opt_str,
    opt_str_list,
    req_blob,
    req_str,
)

__all__ = ["CryptoOperations"]

#: KMS encrypts at most 4 KiB directly (PlaintextType max 4096); larger data takes a data key.
MAX_PLAINTEXT_BYTES = 4096


class CryptoOperations(ServiceCore):
    def _encrypt(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=True, allow_sealed=True)
        plaintext = req_blob(req, "Plaintext", max_len=MAX_PLAINTEXT_BYTES)
        context = opt_context(req, "EncryptionContext")
        algorithm = self._algorithm(req)
        ctx.touch(self._arn(key))
        self._authorize(caller, key, "Encrypt", opt_str_list(req, "GrantTokens"), context=context)
        self._require_usable(key)
        self._dry_run(req)
        return {
            "CiphertextBlob": self._seal(key, plaintext, context),
            "KeyId": self._arn(key),
            "EncryptionAlgorithm": algorithm,
        }

    def _decrypt(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        blob = req_blob(req, "CiphertextBlob", max_len=MAX_CIPHERTEXT_BYTES)
        context = opt_context(req, "EncryptionContext")
        algorithm = self._algorithm(req)
        self._no_recipient(req)
        key, plaintext = self._key_for_blob(
            blob,
            opt_str(req, "KeyId"),
            caller,
            "Decrypt",
            context,
            opt_str_list(req, "GrantTokens"),
            ctx,
        )
        self._dry_run(req)
        return {"KeyId": self._arn(key), "Plaintext": plaintext, "EncryptionAlgorithm": algorithm}

    def _re_encrypt(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        blob = req_blob(req, "CiphertextBlob", max_len=MAX_CIPHERTEXT_BYTES)
        source_context = opt_context(req, "SourceEncryptionContext")
        destination_context = opt_context(req, "DestinationEncryptionContext")
        source_algorithm = self._algorithm(req, "SourceEncryptionAlgorithm")
        destination_algorithm = self._algorithm(req, "DestinationEncryptionAlgorithm")
        tokens = opt_str_list(req, "GrantTokens")
        destination = self._resolve(
            req_str(req, "DestinationKeyId"), caller, allow_alias=True, allow_sealed=True
        )
        source, plaintext = self._key_for_blob(
            blob,
            opt_str(req, "SourceKeyId"),
            caller,
            "ReEncryptFrom",
            source_context,
            tokens,
            ctx,
            also=destination,
        )
        ctx.touch(self._arn(destination))
        self._authorize(
            caller, destination, "ReEncryptTo", tokens, context=destination_context, also=source
        )
        self._require_usable(destination)
        self._dry_run(req)
        return {
            "CiphertextBlob": self._seal(destination, plaintext, destination_context),
            "SourceKeyId": self._arn(source),
            "KeyId": self._arn(destination),
            "SourceEncryptionAlgorithm": source_algorithm,
            "DestinationEncryptionAlgorithm": destination_algorithm,
        }

    def _data_key(
        self, req: Request, caller: Caller, ctx: CallContext, action: str
    ) -> tuple[KeyRecord, bytes, bytes]:
        key = self._resolve(req_str(req, "KeyId"), caller, allow_alias=True, allow_sealed=True)
        context = opt_context(req, "EncryptionContext")
        size = opt_int(req, "NumberOfBytes", 1, 1024)
        spec = opt_str(req, "KeySpec")
        if size is not None and spec is not None:
            raise KmsError(
                "ValidationException", "Please specify either number of bytes or key spec."
            )
        if spec is not None:
            if spec not in ("AES_256", "AES_128"):
                raise KmsError(
                    "ValidationException",
                    f"1 validation error detected: Value '{spec[:64]}' at 'keySpec' failed to "
                    "satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]",
                )
            size = 32 if spec == "AES_256" else 16
        if size is None:
            raise KmsError(
                "ValidationException", "Please specify either number of bytes or key spec."
            )
        self._no_recipient(req)
        ctx.touch(self._arn(key))
        self._authorize(caller, key, action, opt_str_list(req, "GrantTokens"), context=context)
        self._require_usable(key)
        self._dry_run(req)
        plaintext = os.urandom(size)
        return key, plaintext, self._seal(key, plaintext, context)

    def _generate_data_key(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        key, plaintext, blob = self._data_key(req, caller, ctx, "GenerateDataKey")
        return {"CiphertextBlob": blob, "Plaintext": plaintext, "KeyId": self._arn(key)}

    def _generate_data_key_without_plaintext(
        self, req: Request, caller: Caller, ctx: CallContext
    ) -> dict[str, Any]:
        key, _, blob = self._data_key(req, caller, ctx, "GenerateDataKeyWithoutPlaintext")
        return {"CiphertextBlob": blob, "KeyId": self._arn(key)}

    def _generate_random(self, req: Request, caller: Caller, ctx: CallContext) -> dict[str, Any]:
        if req.get("CustomKeyStoreId") is not None:
            raise KmsError("UnsupportedOperationException", "Custom key stores are not supported.")
        self._no_recipient(req)
        size = opt_int(req, "NumberOfBytes", 1, 1024)
        if size is None:
            raise KmsError(
                "ValidationException",
                "1 validation error detected: Value null at 'numberOfBytes' failed to satisfy "
                "constraint: Member must not be null",
            )
        return {"Plaintext": os.urandom(size)}
