"""Users and authentication: argon2id hashes, the timing decoy, the login cache, serialisation."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import argon2
import pytest

from sealmq.core import security
from sealmq.core.security import (
    Authenticator,
    Principal,
    UserRecord,
    generate_password,
    hash_password,
    verify_password,
)

# Cheap parameters so the tests stay fast; verify reads them from each hash.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records() -> list[UserRecord]:
    return [
        UserRecord.create("admin", "correct horse", ["admins"], hasher=FAST),
        UserRecord.create("app", b"\x00binary\xffpw", hasher=FAST),
    ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(records: list[UserRecord], clock: FakeClock) -> Iterator[Authenticator]:
    authenticator = Authenticator(records, cache_seconds=30, clock=clock)
    yield authenticator
    authenticator.close()


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts argon2 verifications (each call records the hash it checked)."""
    calls: list[str] = []
    real = security.verify_password

    def counting(password_hash: str, password: str | bytes) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counting)
    return calls


def test_hash_is_argon2id_with_default_cost() -> None:
    hashed = hash_password("s3cret")
    params = argon2.extract_parameters(hashed)
    assert hashed.startswith("$argon2id$")
    assert params.memory_cost >= 65536 and params.time_cost >= 3
    assert verify_password(hashed, "s3cret")
    assert not verify_password(hashed, "s3cret ")


def test_verify_never_raises() -> None:
    hashed = hash_password("pw", hasher=FAST)
    assert not verify_password("not a hash", "pw")
    assert not verify_password("", "pw")
    assert not verify_password(hashed, "\ud800")  # unencodable
    assert hash_password("pw", hasher=FAST) != hashed  # fresh salt each time


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) >= 20
        assert re.fullmatch(r"[A-Za-z0-9_-]+", password)


def test_authenticate(auth: Authenticator) -> None:
    assert auth.authenticate("admin", "correct horse") == Principal("admin", frozenset({"admins"}))
    assert auth.authenticate("app", b"\x00binary\xffpw") == Principal("app", frozenset())
    assert auth.authenticate("admin", "wrong") is None
    assert auth.authenticate("nobody", "correct horse") is None
    assert auth.authenticate(None, "correct horse") is None
    assert auth.authenticate("admin", None) is None
    assert auth.authenticate("", "") is None


def test_unknown_user_still_spends_a_verify(auth: Authenticator, verifies: list[str]) -> None:
    assert auth.authenticate("nobody", "pw") is None
    assert len(verifies) == 1
    decoy = argon2.extract_parameters(verifies[0])
    real = argon2.extract_parameters(auth.records[0].password_hash)
    assert decoy == real  # same type, version and cost as a real user's hash
    with pytest.raises(argon2.exceptions.VerifyMismatchError):  # well-formed: argon2 runs in full
        FAST.verify(verifies[0], "pw")
    assert auth.authenticate("nobody", "pw") is None
    assert len(verifies) == 2  # failures are never cached


def test_decoy_uses_default_cost_without_users() -> None:
    auth = Authenticator([])
    try:
        params = argon2.extract_parameters(auth._decoy_hash)
        assert params.type is argon2.Type.ID and params.memory_cost == 65536
        with pytest.raises(argon2.exceptions.VerifyMismatchError):
            FAST.verify(auth._decoy_hash, "pw")
    finally:
        auth.close()


def test_success_cached_for_a_bounded_time(
    auth: Authenticator, clock: FakeClock, verifies: list[str]
) -> None:
    assert auth.authenticate("admin", "correct horse") is not None
    assert auth.authenticate("admin", "correct horse") is not None
    assert len(verifies) == 1
    # Another password for the same user never rides on the cache.
    assert auth.authenticate("admin", "correct horsf") is None
    assert len(verifies) == 2
    clock.now += 30
    assert auth.authenticate("admin", "correct horse") is not None
    assert len(verifies) == 3
    auth.clear_cache()
    assert auth.authenticate("admin", "correct horse") is not None
    assert len(verifies) == 4


def test_cache_is_bounded(records: list[UserRecord], verifies: list[str]) -> None:
    auth = Authenticator(records, cache_entries=1)
    try:
        auth.authenticate("admin", "correct horse")
        auth.authenticate("app", b"\x00binary\xffpw")  # evicts admin
        auth.authenticate("admin", "correct horse")
        assert len(verifies) == 3
    finally:
        auth.close()


@pytest.mark.asyncio
async def test_authenticate_async(auth: Authenticator, verifies: list[str]) -> None:
    assert await auth.authenticate_async("admin", "correct horse") == Principal(
        "admin", frozenset({"admins"})
    )
    assert await auth.authenticate_async("admin", "nope") is None
    assert await auth.authenticate_async("ghost", "nope") is None
    assert await auth.authenticate_async(None, None) is None
    assert len(verifies) == 3
    assert await auth.authenticate_async("admin", "correct horse") is not None
    assert len(verifies) == 3  # cached


@pytest.mark.asyncio
async def test_reconnect_storm_shares_one_verify(auth: Authenticator, verifies: list[str]) -> None:
    results = await asyncio.gather(
        *(auth.authenticate_async("admin", "correct horse") for _ in range(20)),
        *(auth.authenticate_async("admin", "bad") for _ in range(20)),
    )
    assert results[:20] == [Principal("admin", frozenset({"admins"}))] * 20
    assert results[20:] == [None] * 20
    assert len(verifies) == 2


@pytest.mark.asyncio
async def test_cancelled_caller_does_not_cancel_others(auth: Authenticator) -> None:
    first = asyncio.create_task(auth.authenticate_async("admin", "correct horse"))
    second = asyncio.create_task(auth.authenticate_async("admin", "correct horse"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == Principal("admin", frozenset({"admins"}))
    with pytest.raises(asyncio.CancelledError):
        await first


def test_serialisation_round_trip(auth: Authenticator, records: list[UserRecord]) -> None:
    data = auth.to_bytes()
    assert b"correct horse" not in data
    document = json.loads(data)
    assert document["version"] == 1
    assert [user["username"] for user in document["users"]] == ["admin", "app"]

    restored = Authenticator.from_bytes(data, cache_seconds=0)
    try:
        assert restored.records == tuple(records)
        assert restored.authenticate("admin", "correct horse") is not None
        assert restored.to_bytes() == data
    finally:
        restored.close()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"version": 2, "users": []}',
        b'{"version": 1, "users": {}}',
        b'{"version": 1, "users": [{"username": "a", "groups": []}]}',
        b'{"version": 1, "users": [{"username": "", "password_hash": "h", "groups": []}]}',
        b'{"version": 1, "users": [{"username": "a", "password_hash": "h", "groups": [1]}]}',
    ],
)
def test_from_bytes_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ValueError):
        Authenticator.from_bytes(data)


def test_duplicate_users_rejected(records: list[UserRecord]) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Authenticator([*records, records[0]])


def test_record_repr_hides_hash_and_create_rejects_empty(records: list[UserRecord]) -> None:
    assert records[0].password_hash not in repr(records[0])
    with pytest.raises(ValueError):
        UserRecord.create("u", "")
    assert hash(Principal("a", frozenset({"g"}))) == hash(Principal("a", frozenset({"g"})))


def test_anonymous_access_answers_clients_without_credentials_only() -> None:
    from sealmq.core.security import ANONYMOUS

    record = UserRecord.create("u", "a-long-password", hasher=FAST)
    closed = Authenticator([record])
    opened = Authenticator([record], anonymous=True)
    try:
        for credentials in ((None, None), ("", ""), ("", None)):
            assert closed.authenticate(*credentials) is None
            assert opened.authenticate(*credentials) == ANONYMOUS
        assert ANONYMOUS.username == "anonymous" and ANONYMOUS.groups == {"anonymous"}
        # A wrong or partial login is never anonymous.
        assert opened.authenticate("u", "wrong") is None
        assert opened.authenticate("u", None) is None
        assert opened.authenticate(None, "pw") is None
        assert opened.authenticate("u", "a-long-password") == record.principal()
    finally:
        closed.close()
        opened.close()


@pytest.mark.asyncio
async def test_a_listed_certificate_logs_in_without_a_password() -> None:
    from sealmq.core.security import PeerCertificate, Principal

    app = Principal("app", frozenset({"apps"}))
    device = Principal("device-1", frozenset({"devices"}))
    record = UserRecord.create("u", "a-long-password", hasher=FAST)
    authenticator = Authenticator(
        [record], certificates={"subject:CN=app,O=Ex": app, "san:DNS:d1.example": device}
    )

    def cert(subject: str, *sans: str) -> PeerCertificate:
        return PeerCertificate(subject, "CN=ca", "01", "ab", sans)

    try:
        assert await authenticator.authenticate_async(None, None, cert("CN=app,O=Ex")) == app
        assert await authenticator.authenticate_async("app", "", cert("CN=app,O=Ex")) == app
        found = await authenticator.authenticate_async(None, None, cert("CN=x", "DNS:d1.example"))
        assert found == device
        # Unlisted, or naming another user: a password login as usual.
        assert await authenticator.authenticate_async(None, None, cert("CN=other")) is None
        other = await authenticator.authenticate_async("u", "a-long-password", cert("CN=app,O=Ex"))
        assert other == record.principal()
        assert await authenticator.authenticate_async("u", "wrong", cert("CN=app,O=Ex")) is None
    finally:
        authenticator.close()
