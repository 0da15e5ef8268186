"""The data-key cache in front of a key provider, and the length-prefixed encodings."""

from __future__ import annotations

import pytest

from sealmq.store.crypto import counter_nonce, encode_context, encode_fields
from sealmq.store.errors import KeyUnavailableError
from sealmq.store.keys import DataKeyCache
from tests.store.conftest import FakeClock, FakeKeyProvider

CTX = {"purpose": "test", "broker": "b1"}


def test_decrypt_is_cached_for_the_ttl_then_asked_again(
    fake_keys: FakeKeyProvider, clock: FakeClock
) -> None:
    cache = DataKeyCache(fake_keys, 300, clock=clock)
    dek, wrapped = cache.generate(CTX)
    assert len(dek) == 32 and dek not in wrapped
    assert cache.decrypt(wrapped, CTX) == dek
    assert fake_keys.decrypted == 0  # generate() filled the cache
    clock.now += 299
    assert cache.decrypt(wrapped, CTX) == dek
    assert fake_keys.decrypted == 0
    clock.now += 2
    assert cache.decrypt(wrapped, CTX) == dek
    assert fake_keys.decrypted == 1
    assert cache.provider_calls == 2


def test_expired_keys_are_dropped_and_a_revoked_provider_fails(
    fake_keys: FakeKeyProvider, clock: FakeClock
) -> None:
    cache = DataKeyCache(fake_keys, 10, clock=clock)
    _, wrapped = cache.generate(CTX)
    fake_keys.available = False
    assert len(cache.decrypt(wrapped, CTX)) == 32  # still cached
    clock.now += 11
    with pytest.raises(KeyUnavailableError, match="grant revoked"):
        cache.decrypt(wrapped, CTX)
    with pytest.raises(KeyUnavailableError):
        cache.generate(CTX)
    fake_keys.available = True
    cache.generate(CTX)
    assert len(cache) == 1  # the expired key went on insertion


def test_the_context_is_part_of_the_cache_slot(fake_keys: FakeKeyProvider) -> None:
    cache = DataKeyCache(fake_keys, 300)
    _, wrapped = cache.generate(CTX)
    with pytest.raises(KeyUnavailableError, match="context mismatch"):
        cache.decrypt(wrapped, {**CTX, "broker": "b2"})


def test_forget_and_bad_providers(fake_keys: FakeKeyProvider) -> None:
    cache = DataKeyCache(fake_keys, 300)
    _, wrapped = cache.generate(CTX)
    cache.forget(wrapped)
    assert len(cache) == 0

    class Short(FakeKeyProvider):
        def generate_data_key(self, context):  # type: ignore[no-untyped-def]
            return b"short", b"wrapped"

    with pytest.raises(KeyUnavailableError, match="wrong size"):
        DataKeyCache(Short()).generate(CTX)

    class NoId(FakeKeyProvider):
        @property
        def key_id(self) -> str:
            raise RuntimeError("down")

    with pytest.raises(KeyUnavailableError):
        DataKeyCache(NoId()).key_id()


def test_context_encoding_is_sorted_and_unambiguous() -> None:
    assert encode_context({"a": "1", "b": "2"}) == encode_context({"b": "2", "a": "1"})
    assert encode_context({"a": "bc"}) != encode_context({"ab": "c"})
    assert encode_context({"a": "", "b": ""}) != encode_context({"a": "\x00\x00\x00\x00b"})
    assert encode_fields(b"ab", b"c") != encode_fields(b"a", b"bc")


def test_counter_nonces_are_96_bits_and_distinct() -> None:
    nonces = {counter_nonce(i) for i in range(1000)}
    assert len(nonces) == 1000
    assert all(len(n) == 12 for n in nonces)
