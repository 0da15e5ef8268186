"""Users and authentication: argon2id password hashes, principals, a login cache.

The broker keeps users as :class:`UserRecord` entries (never clear-text
passwords) and asks an :class:`Authenticator` who a connecting client is.
Adapters call :meth:`Authenticator.authenticate_async` from the event loop;
a ``None`` answer means "refuse the connection" and says nothing about why.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sealmq.core.limits import LoginThrottle, address_host

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "PasswordHasher",
    "PeerCertificate",
    "Principal",
    "ReloadableAuthenticator",
    "UserRecord",
    "generate_password",
    "hash_password",
    "password_hasher",
    "verify_password",
]

# argon2-cffi's defaults are RFC 9106's "low memory" argon2id profile
# (t=3, 64 MiB, p=4): ~50-100 ms per hash or verify on a server core.
_HASHER = argon2.PasswordHasher()

#: Serialisation format version written by :meth:`Authenticator.to_bytes`.
RECORDS_VERSION = 1

#: How long a successful login is remembered, in seconds (see Authenticator).
DEFAULT_CACHE_SECONDS = 60.0
#: How many successful logins are remembered at most; the oldest go first.
DEFAULT_CACHE_ENTRIES = 1024

Password = str | bytes


def password_hasher(*, time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    """An argon2id hasher with these costs, for :func:`hash_password` and
    :meth:`UserRecord.create` (``[security]`` settings; tests use cheap ones)."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def hash_password(password: Password, *, hasher: argon2.PasswordHasher | None = None) -> str:
    """An argon2id hash (PHC string) of ``password``, with a fresh random salt.

    ``hasher`` overrides the cost parameters (tests use a cheap one).
    """
    return (hasher or _HASHER).hash(password)


def verify_password(password_hash: str, password: Password) -> bool:
    """True if ``password`` matches ``password_hash``; False for a mismatch or a bad hash.

    The cost parameters come from the hash itself; the comparison is constant-time.
    """
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerificationError, InvalidHashError, UnicodeError, ValueError, TypeError):
        return False


def generate_password() -> str:
    """A random 32-character URL-safe password (192 bits), e.g. for the first admin user.

    It has none of ``, : =``, which Amazon MQ forbids in passwords.
    """
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The certificate a client presented in its TLS handshake and the listener verified.

    ``subject`` and ``issuer`` are distinguished names as Java's ``X500Principal``
    (and so ActiveMQ) writes them: most specific first, ``CN=client,O=Example,C=US``.
    """

    subject: str
    issuer: str
    serial_number: str
    #: SHA-256 of the DER certificate, lowercase hex.
    fingerprint: str
    #: Subject alternative names as ``DNS:name``, ``email:addr``, ``URI:uri``,
    #: ``IP Address:1.2.3.4`` (Python's ``getpeercert`` names).
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated connection acts as: the user, its groups, its certificate.

    Adapters pass it to :meth:`sealmq.core.broker.Broker.connect`; the core takes the
    user name from it (session ownership, the user a message was sent by) and later
    authorization takes the groups.
    """

    username: str
    groups: frozenset[str] = frozenset()
    certificate: PeerCertificate | None = None


#: Who a client without credentials is when anonymous access is on (ActiveMQ's
#: ``anonymousAccessAllowed`` uses the same user and group names).
ANONYMOUS = Principal("anonymous", frozenset({"anonymous"}))


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user: name, argon2id hash of the password, groups, console access."""

    username: str
    password_hash: str = field(repr=False)
    groups: frozenset[str] = frozenset()
    #: May use the web console (Amazon MQ's ``consoleAccess``); stored, not yet used.
    console_access: bool = False

    @classmethod
    def create(
        cls,
        username: str,
        password: Password,
        groups: Iterable[str] = (),
        *,
        hasher: argon2.PasswordHasher | None = None,
    ) -> UserRecord:
        """Hash ``password`` into a new record; raise ValueError for an empty name or password."""
        if not username or not password:
            raise ValueError("username and password must not be empty")
        return cls(username, hash_password(password, hasher=hasher), frozenset(groups))

    def principal(self) -> Principal:
        return Principal(self.username, self.groups)


class Authenticator:
    """Checks user names and passwords against a fixed set of :class:`UserRecord`.

    Build a new Authenticator when the users change. Close it (:meth:`close`)
    when done, to stop its verification threads.

    Timing: an unknown user costs one argon2 verify against a decoy hash with
    the same cost parameters as the real ones, so response time does not tell
    which user names exist.

    Cache: a successful login is remembered for ``cache_seconds`` under
    ``(username, HMAC-SHA256(per-process random key, password))`` so that a
    reconnect storm costs one argon2 verify per user, not one per connection.
    This is safe because
    - only successes are cached, and only under the exact password that
      succeeded: any other password misses the cache and pays full argon2;
    - the key is an HMAC under a secret that exists only in this process's
      memory, so an attacker cannot compute cache keys, and dict-lookup timing
      reveals nothing they could steer; nothing is written to disk;
    - a hit only tells the caller what a success tells anyway;
    - entries expire after ``cache_seconds`` and are bounded in number, and a
      new Authenticator (after a user or password change) starts empty.
    Concurrent attempts with the same credentials share one verification.

    Anonymous access (``anonymous``): a client with neither user name nor password
    is :data:`ANONYMOUS`; without it, such a client is refused like a wrong password.
    A user name without a password (or the reverse) is always refused.

    Certificate logins (``certificates``, ActiveMQ's certificate authentication): a
    client whose verified certificate's subject (or a subject alternative name) is
    listed is that principal, without a password, unless it names another user (then
    its password is checked as usual).
    """

    def __init__(
        self,
        records: Iterable[UserRecord],
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        max_concurrent_verifies: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        anonymous: bool = False,
        certificates: Mapping[str, Principal] | None = None,
    ) -> None:
        self.anonymous = anonymous
        #: Certificate logins by ``subject:<DN>`` or ``san:<kind>:<value>``.
        self.certificates = dict(certificates or {})
        self._records: dict[str, UserRecord] = {}
        for record in records:
            if record.username in self._records:
                raise ValueError(f"duplicate user {record.username!r}")
            self._records[record.username] = record
        self._decoy_hash = _decoy_hash(self._records.values())
        self._cache_seconds = cache_seconds
        self._cache_entries = cache_entries
        self._clock = clock
        self._cache_secret = secrets.token_bytes(32)
        self._cache: OrderedDict[tuple[str, bytes], tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, bytes], asyncio.Future[Principal | None]] = {}
        # A verify holds ~64 MiB and a core for ~0.1 s: a small dedicated pool bounds
        # both under a flood of bad logins, and keeps the default executor (fsync,
        # other blocking work) free.
        workers = max_concurrent_verifies or max(1, min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="sealmq-auth")

    @property
    def records(self) -> tuple[UserRecord, ...]:
        """The users, in the order given."""
        return tuple(self._records.values())

    def authenticate(self, username: str | None, password: Password | None) -> Principal | None:
        """The principal for these credentials, or None; blocks for one argon2 verify.

        Missing credentials return at once (None, or :data:`ANONYMOUS`): there is
        no secret to protect.
        """
        if not username or password is None:
            return self._without_credentials(username, password)
        key = self._cache_key(username, password)
        principal = self._cached(key)
        if principal is None:
            principal = self._verify(username, password)
            if principal is not None:
                self._remember(key, principal)
        return principal

    async def authenticate_async(
        self,
        username: str | None,
        password: Password | None,
        certificate: PeerCertificate | None = None,
        peer: str | None = None,
    ) -> Principal | None:
        """Like :meth:`authenticate`, with the argon2 verify in a worker thread;
        ``certificate``: the client's verified certificate, for certificate logins.
        ``peer`` is accepted for the adapters' protocol; throttling by address is
        :class:`ReloadableAuthenticator`'s."""
        if certificate is not None and self.certificates:
            mapped = self.by_certificate(certificate)
            if mapped is not None and (not username or username == mapped.username):
                return mapped
        if not username or password is None:
            return self._without_credentials(username, password)
        key = self._cache_key(username, password)
        principal = self._cached(key)
        if principal is not None:
            return principal
        loop = asyncio.get_running_loop()
        future = self._inflight.get(key)
        if future is None or future.get_loop() is not loop:
            future = loop.run_in_executor(self._executor, self._verify, username, password)
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller giving up must not cancel the others' shared attempt.
        return await asyncio.shield(future)

    def by_certificate(self, certificate: PeerCertificate) -> Principal | None:
        """The principal ``certificate`` logs in as, or None if it is not listed."""
        found = self.certificates.get("subject:" + certificate.subject)
        if found is None:
            for name in certificate.subject_alt_names:
                found = self.certificates.get("san:" + name)
                if found is not None:
                    break
        return found

    def clear_cache(self) -> None:
        """Forget every remembered login."""
        with self._lock:
            self._cache.clear()

    def close(self, *, cancel_pending: bool = True) -> None:
        """Stop the verification threads (running verifies finish first; queued ones
        too unless ``cancel_pending``)."""
        self._executor.shutdown(wait=False, cancel_futures=cancel_pending)

    def to_bytes(self) -> bytes:
        """The records as JSON (hashes, never passwords), for :meth:`from_bytes`."""
        users = [
            {
                "username": record.username,
                "password_hash": record.password_hash,
                "groups": sorted(record.groups),
            }
            for record in self._records.values()
        ]
        return json.dumps({"version": RECORDS_VERSION, "users": users}, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs: Any) -> Authenticator:
        """Rebuild from :meth:`to_bytes` output; ``kwargs`` go to the constructor.

        Raises ValueError if ``data`` is not a valid record set.
        """
        return cls(_parse_records(data), **kwargs)

    # -- internals ----------------------------------------------------------------------------

    def _without_credentials(
        self, username: str | None, password: Password | None
    ) -> Principal | None:
        # An empty login header or user name is no credential either (clients differ).
        if self.anonymous and not username and not password:
            return ANONYMOUS
        return None

    def _verify(self, username: str, password: Password) -> Principal | None:
        record = self._records.get(username)
        if record is None:
            verify_password(self._decoy_hash, password)
            return None
        return record.principal() if verify_password(record.password_hash, password) else None

    def _cache_key(self, username: str, password: Password) -> tuple[str, bytes]:
        raw = password.encode("utf-8", "surrogatepass") if isinstance(password, str) else password
        return username, hmac.digest(self._cache_secret, raw, hashlib.sha256)

    def _cached(self, key: tuple[str, bytes]) -> Principal | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._cache[key]
                return None
            return entry[1]

    def _remember(self, key: tuple[str, bytes], principal: Principal) -> None:
        if self._cache_seconds <= 0 or self._cache_entries <= 0:
            return
        with self._lock:
            self._cache[key] = (self._clock() + self._cache_seconds, principal)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)

    def _settle(self, key: tuple[str, bytes], future: asyncio.Future[Principal | None]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled() and future.exception() is None:
            principal = future.result()
            if principal is not None:
                self._remember(key, principal)


class ReloadableAuthenticator:
    """The users new logins are checked against, replaced while the broker serves.

    Adapters hold this one object; :meth:`replace` puts a new :class:`Authenticator`
    (users changed) behind it. Logins already being verified finish against the old
    users; connected clients keep what they logged in as.
    """

    def __init__(self, current: Authenticator, throttle: LoginThrottle | None = None) -> None:
        self.current = current
        #: Failed-login throttling per user and address; None: none.
        self.throttle = throttle

    @property
    def records(self) -> tuple[UserRecord, ...]:
        return self.current.records

    def authenticate(self, username: str | None, password: Password | None) -> Principal | None:
        return self.current.authenticate(username, password)

    async def authenticate_async(
        self,
        username: str | None,
        password: Password | None,
        certificate: PeerCertificate | None = None,
        peer: str | None = None,
    ) -> Principal | None:
        """As :meth:`Authenticator.authenticate_async`; ``peer`` (the client's address)
        for throttling: a user or address past its failures is refused unchecked, and
        each failure past the first few is answered later."""
        throttle = self.throttle
        if throttle is None:
            return await self.current.authenticate_async(username, password, certificate)
        host = address_host(peer)
        if throttle.locked(username, host) is not None:
            return None
        principal = await self.current.authenticate_async(username, password, certificate)
        if principal is None:
            delay = throttle.failed(username, host)
            if delay:
                await asyncio.sleep(delay)
        else:
            throttle.succeeded(username)
        return principal

    def replace(self, authenticator: Authenticator) -> None:
        old, self.current = self.current, authenticator
        old.close(cancel_pending=False)

    def close(self) -> None:
        self.current.close()


def _decoy_hash(records: Iterable[UserRecord]) -> str:
    """A well-formed argon2 hash that no password matches, as costly as the real ones.

    Random salt and digest: verifying against it runs argon2 in full and fails,
    without spending a hash computation here.
    """
    # (type, version, memory KiB, time, lanes, salt bytes, digest bytes)
    params = (
        "argon2" + _HASHER.type.name.lower(),
        argon2.low_level.ARGON2_VERSION,
        _HASHER.memory_cost,
        _HASHER.time_cost,
        _HASHER.parallelism,
        _HASHER.salt_len,
        _HASHER.hash_len,
    )
    for record in records:
        try:
            found = argon2.extract_parameters(record.password_hash)
        except InvalidHashError:
            continue
        params = (
            "argon2" + found.type.name.lower(),
            found.version,
            found.memory_cost,
            found.time_cost,
            found.parallelism,
            found.salt_len,
            found.hash_len,
        )
        break
    kind, version, memory, rounds, lanes, salt_len, hash_len = params

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=")

    salt = b64(secrets.token_bytes(salt_len))
    digest = b64(secrets.token_bytes(hash_len))
    return f"${kind}$v={version}$m={memory},t={rounds},p={lanes}${salt}${digest}"


def _parse_records(data: bytes) -> list[UserRecord]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"user records are not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != RECORDS_VERSION:
        raise ValueError(f"user records: expected an object with version {RECORDS_VERSION}")
    users = document.get("users")
    if not isinstance(users, list):
        raise ValueError("user records: 'users' must be a list")
    records = []
    for index, item in enumerate(users):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("username"), str)
            and item["username"]
            and isinstance(item.get("password_hash"), str)
            and isinstance(item.get("groups"), list)
            and all(isinstance(group, str) for group in item["groups"])
        ):
            raise ValueError(f"user records: entry {index} is malformed")
        records.append(
            UserRecord(item["username"], item["password_hash"], frozenset(item["groups"]))
        )
    return records
