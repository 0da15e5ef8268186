"""How the store sees keys: a narrow :class:`KeyProvider` and a bounded-time DEK cache.

A provider is implemented by the ``sealmq.kms`` clients (the local key service,
a KMS-compatible endpoint, AWS KMS itself). Its calls are synchronous and may
block on the network, so the store makes them only from its writer thread or
during recovery, never on the event loop thread. They are rare: one per segment
plus one re-check each time a cached key expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from sealmq.store.crypto import DEK_BYTES, encode_context
from sealmq.store.errors import KeyUnavailableError

__all__ = [
    "DEFAULT_DATA_KEY_CACHE_SECONDS",
    "DataKeyCache",
    "KeyProvider",
    "decrypt_data_key",
    "generate_data_key",
]

#: How long a plaintext data key may be used without asking the key service again.
#: After this, a revoked grant or disabled key stops the store (five minutes, as the
#: AWS Encryption SDK's caching examples use).
DEFAULT_DATA_KEY_CACHE_SECONDS = 300.0


class KeyProvider(Protocol):
    """A key service's key (the KEK), seen only as a maker and unwrapper of data keys."""

    @property
    def key_id(self) -> str:
        """The key's id, recorded next to every wrapped data key (never secret)."""
        ...

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and its wrapping, bound to ``context``."""
        ...

    def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key; fails unless ``context`` is the one it was made with."""
        ...


class DataKeyCache:
    """Plaintext data keys for at most ``ttl_seconds`` each, in front of a provider.

    Every exception a provider raises comes out as :class:`KeyUnavailableError`.
    Thread-safe; provider calls are made outside the lock.
    """

    def __init__(
        self,
        provider: KeyProvider,
        ttl_seconds: float = DEFAULT_DATA_KEY_CACHE_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[tuple[bytes, bytes], tuple[bytes, float]] = {}
        #: Calls made to the provider (generate + decrypt), for tests and metrics.
        self.provider_calls = 0
        #: The last (wrapped, context, slot) looked up: the journal asks for its segment's
        #: key once per batch, and encoding the context for the slot cost more than the rest.
        self._memo: tuple[bytes, dict[str, str], tuple[bytes, bytes]] | None = None

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    def key_id(self) -> str:
        try:
            return str(self._provider.key_id)
        except Exception as exc:
            raise KeyUnavailableError(f"key id unavailable: {_describe(exc)}") from exc

    def generate(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh ``(plaintext, wrapped)`` data key, remembered for the cache period."""
        self.provider_calls += 1
        plaintext, wrapped = generate_data_key(self._provider, context)
        self._remember(wrapped, context, plaintext)
        return plaintext, wrapped

    def decrypt(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The plaintext of ``wrapped``: from the cache while fresh, else from the provider."""
        memo = self._memo
        if memo is not None and memo[0] == wrapped and memo[1] == context:
            slot = memo[2]
        else:
            slot = (wrapped, encode_context(context))
            self._memo = (wrapped, dict(context), slot)
        now = self._clock()
        with self._lock:
            hit = self._keys.get(slot)
            if hit is not None and hit[1] > now:
                return hit[0]
        self.provider_calls += 1
        plaintext = decrypt_data_key(self._provider, wrapped, context)
        self._remember(wrapped, context, plaintext)
        return plaintext

    def forget(self, wrapped: bytes) -> None:
        """Drop every cached plaintext of ``wrapped`` (its segment is gone)."""
        with self._lock:
            for slot in [s for s in self._keys if s[0] == wrapped]:
                del self._keys[slot]

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def _remember(self, wrapped: bytes, context: Mapping[str, str], plaintext: bytes) -> None:
        now = self._clock()
        with self._lock:
            # Expired entries go on every insertion, so the cache holds no more keys
            # than were used within one cache period.
            for slot in [s for s, (_, exp) in self._keys.items() if exp <= now]:
                del self._keys[slot]
            self._keys[(wrapped, encode_context(context))] = (plaintext, now + self._ttl)


def generate_data_key(provider: KeyProvider, context: Mapping[str, str]) -> tuple[bytes, bytes]:
    """``provider.generate_data_key`` with every failure as :class:`KeyUnavailableError`."""
    try:
        plaintext, wrapped = provider.generate_data_key(dict(context))
    except Exception as exc:
        raise KeyUnavailableError(f"cannot generate a data key: {_describe(exc)}") from exc
    plaintext, wrapped = bytes(plaintext), bytes(wrapped)
    if len(plaintext) != DEK_BYTES:
        raise KeyUnavailableError("key provider returned a data key of the wrong size")
    return plaintext, wrapped


def decrypt_data_key(provider: KeyProvider, wrapped: bytes, context: Mapping[str, str]) -> bytes:
    """``provider.decrypt_data_key`` with every failure as :class:`KeyUnavailableError`."""
    try:
        plaintext = bytes(provider.decrypt_data_key(wrapped, dict(context)))
    except Exception as exc:
        raise KeyUnavailableError(f"cannot decrypt a data key: {_describe(exc)}") from exc
    if len(plaintext) != DEK_BYTES:
        raise KeyUnavailableError("key provider returned a data key of the wrong size")
    return plaintext


def _describe(exc: Exception) -> str:
    # The provider's own message names the key or grant problem; it never holds key bytes.
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
