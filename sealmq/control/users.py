"""The broker's users: from the configuration file and managed at runtime.

Two sources, merged at every start and at every ``reload-users`` request:

- ``[[users]]`` in the configuration file: declared there, changed there (the
  ``sealmq user`` commands refuse to touch them);
- managed users, kept sealed in ``<data_dir>/users.sealed`` (argon2id hashes,
  groups, the console-access flag; never a password), changed by ``sealmq user
  create|update|delete`` whether or not the broker runs. A running broker is
  asked to reload them (a control request naming the action only), so changes
  apply to new connections at once; connected clients keep the groups they
  logged in with.

A name in both is the configuration's (a warning says the managed one is
ignored). The generated ``admin`` (no users anywhere at the first start) is
stored in the same file in its first format (version 1); configured
``[[users]]`` replace it, as they always did, until ``sealmq user`` first
writes the file (version 2), after which what it holds is managed and stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sealmq.config import Settings
from sealmq.config.checks import (
    FORBIDDEN_PASSWORD_CHARACTERS,
    MIN_PASSWORD_LENGTH,
    check_groups,
    check_name,
    password_problem,
)
from sealmq.control.admin import (
    ADMIN_USER,
    forget_generated_password,
    generated_password,
    remember_generated_password,
)
from sealmq.core.security import (
    Authenticator,
    PasswordHasher,
    Principal,
    UserRecord,
    generate_password,
    hash_password,
    password_hasher,
)
from sealmq.store.keys import KeyProvider
from sealmq.store.sealed import read_sealed, write_sealed

__all__ = [
    "ADMIN_GROUP",
    "FORBIDDEN_PASSWORD_CHARACTERS",
    "MIN_PASSWORD_LENGTH",
    "USERS_FILE",
    "UserError",
    "Users",
    "load_users",
    "password_problem",
    "settings_hasher",
]

log = logging.getLogger("sealmq")

USERS_FILE = "users.sealed"
_LOCK_FILE = "users.lock"
#: The generated admin's file (Authenticator.to_bytes); version 2 holds managed users.
_GENERATED_VERSION = 1
_MANAGED_VERSION = 2
#: The group of the generated administrator; grant it what administrators may do.
ADMIN_GROUP = "admin"


class UserError(Exception):
    """A user change was refused; the message says why and changes nothing."""


def settings_hasher(settings: Settings) -> PasswordHasher:
    """The argon2id hasher ``[security]`` asks for; warns when it is cheaper than the default."""
    security = settings.security
    if security.weaker_than_default:
        log.warning("[security] argon2 costs are below the defaults: for tests only")
    return password_hasher(
        time_cost=security.password_hash_time_cost,
        memory_kib=security.password_hash_memory_kib,
        parallelism=security.password_hash_parallelism,
    )


def _context(broker_id: str) -> dict[str, str]:
    return {"broker": broker_id, "purpose": "users"}


@dataclass(frozen=True, slots=True)
class _Stored:
    version: int
    records: tuple[UserRecord, ...]


def _read(path: Path, keys: KeyProvider, broker_id: str) -> _Stored | None:
    if not path.exists():
        return None
    data = read_sealed(path, keys, _context(broker_id))
    try:
        document = json.loads(data)
        version = document["version"]
        users = document["users"]
        records = tuple(
            UserRecord(
                item["username"],
                item["password_hash"],
                frozenset(item["groups"]),
                console_access=bool(item.get("console_access", False)),
            )
            for item in users
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a user list: {exc}") from None
    if version not in (_GENERATED_VERSION, _MANAGED_VERSION):
        raise UserError(f"{path}: unknown user list version {version!r}")
    return _Stored(version, records)


def _write(
    path: Path, records: Iterable[UserRecord], keys: KeyProvider, broker_id: str, version: int
) -> None:
    users = [
        {
            "username": record.username,
            "password_hash": record.password_hash,
            "groups": sorted(record.groups),
            "console_access": record.console_access,
        }
        for record in records
    ]
    data = json.dumps({"version": version, "users": users}, indent=1).encode()
    write_sealed(path, data, keys, _context(broker_id))


def _configured(settings: Settings, hasher: PasswordHasher) -> list[UserRecord]:
    return [
        UserRecord(
            user.username, hash_password(user.password, hasher=hasher), frozenset(user.groups)
        )
        for user in settings.users
    ]


def _certificate_logins(settings: Settings) -> dict[str, Principal]:
    """``[[certificate_users]]`` by what the Authenticator looks up."""
    logins = {}
    for entry in settings.certificate_users:
        key = f"subject:{entry.subject}" if entry.subject is not None else f"san:{entry.san}"
        logins[key] = Principal(entry.username, entry.groups)
    return logins


def load_users(
    settings: Settings, keys: KeyProvider, broker_id: str, *, reseal: bool = False
) -> tuple[Authenticator, str | None]:
    """The users new connections are checked against, and the generated admin's
    password while it is still the admin's (``sealmq.control.admin``).

    With no user anywhere, creates ``admin`` (group ``admin``) with a random password.
    ``reseal`` writes the sealed list again under the current key (after a migration).
    """
    hasher = settings_hasher(settings)
    options: dict[str, Any] = {
        "anonymous": settings.security.anonymous_access,
        "certificates": _certificate_logins(settings),
    }
    path = settings.data_dir / USERS_FILE
    stored = _read(path, keys, broker_id)
    if stored is not None and reseal:
        _write(path, stored.records, keys, broker_id, stored.version)
    configured = _configured(settings, hasher)
    if stored is None and not configured:
        password = generate_password()
        # Kept before the user is stored: a start that fails after this must not lock
        # anyone out.
        remember_generated_password(settings.data_dir, password)
        admin = UserRecord(
            ADMIN_USER, hash_password(password, hasher=hasher), frozenset({ADMIN_GROUP})
        )
        _write(path, [admin], keys, broker_id, _GENERATED_VERSION)
        return Authenticator([admin], **options), password
    managed: tuple[UserRecord, ...] = ()
    if stored is not None and (stored.version == _MANAGED_VERSION or not configured):
        managed = stored.records
    if configured and (stored is None or stored.version == _GENERATED_VERSION):
        forget_generated_password(
            settings.data_dir, why="the configured [[users]] replace the generated 'admin'"
        )
    names = {record.username for record in configured}
    for record in managed:
        if record.username in names:
            log.warning(
                "user %r is in [[users]] and managed: the configuration file's is used",
                record.username,
            )
    records = [*configured, *(r for r in managed if r.username not in names)]
    kept = generated_password(settings.data_dir, managed) if not configured else None
    return Authenticator(records, **options), kept


class Users:
    """``sealmq user ...``: change the managed users of one data folder.

    Each change reads, modifies and rewrites the sealed list under a lock file,
    so that two commands at once do not lose one's change; the caller then asks a
    running broker to reload.
    """

    def __init__(self, settings: Settings, keys: KeyProvider, broker_id: str) -> None:
        self.settings = settings
        self.keys = keys
        self.broker_id = broker_id
        self.path = settings.data_dir / USERS_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[UserRecord]]:
        """The managed users, to change in place; written back when the block ends well."""
        lock_path = self.settings.data_dir / _LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stored = _read(self.path, self.keys, self.broker_id)
            records: list[UserRecord] = []
            if stored is not None and (
                stored.version == _MANAGED_VERSION or not self.settings.users
            ):
                # A generated admin not replaced by [[users]] is in effect: it stays.
                records = list(stored.records)
            yield records
            _write(self.path, records, self.keys, self.broker_id, _MANAGED_VERSION)
        finally:
            os.close(fd)

    def _configured_names(self) -> set[str]:
        return {user.username for user in self.settings.users}

    def _check(self, username: str, groups: Iterable[str]) -> None:
        problem = check_name(username)
        if problem is not None:
            raise UserError(f"user name {username!r}: {problem}")
        problem = check_groups(list(groups))
        if problem is not None:
            raise UserError(problem)
        if username in self._configured_names():
            raise UserError(
                f"user {username!r} is declared in the configuration file's [[users]]: "
                "change it there"
            )

    def _hash(self, password: str) -> str:
        problem = password_problem(password)
        if problem is not None:
            raise UserError(problem)
        return hash_password(password, hasher=settings_hasher(self.settings))

    def create(
        self, username: str, password: str, groups: Iterable[str], *, console_access: bool
    ) -> dict[str, Any]:
        groups = frozenset(groups)
        self._check(username, groups)
        password_hash = self._hash(password)
        with self._locked() as records:
            if any(record.username == username for record in records):
                raise UserError(f"user {username!r} already exists (`sealmq user update`)")
            record = UserRecord(username, password_hash, groups, console_access=console_access)
            records.append(record)
        return _describe(record, "managed")

    def update(
        self,
        username: str,
        *,
        password: str | None = None,
        groups: Iterable[str] | None = None,
        console_access: bool | None = None,
    ) -> dict[str, Any]:
        self._check(username, groups or ())
        password_hash = self._hash(password) if password is not None else None
        with self._locked() as records:
            index = next((i for i, r in enumerate(records) if r.username == username), None)
            if index is None:
                raise UserError(f"no managed user {username!r}")
            record = records[index]
            record = replace(
                record,
                password_hash=password_hash or record.password_hash,
                groups=frozenset(groups) if groups is not None else record.groups,
                console_access=(
                    console_access if console_access is not None else record.console_access
                ),
            )
            records[index] = record
        if password is not None and username == ADMIN_USER:
            forget_generated_password(self.settings.data_dir, why="the admin's password changed")
        return _describe(record, "managed")

    def delete(self, username: str) -> dict[str, Any]:
        self._check(username, ())
        with self._locked() as records:
            kept = [record for record in records if record.username != username]
            if len(kept) == len(records):
                raise UserError(f"no managed user {username!r}")
            if not kept and not self.settings.users:
                raise UserError(f"{username!r} is the broker's last user: create another one first")
            records[:] = kept
        if username == ADMIN_USER:
            forget_generated_password(self.settings.data_dir, why="'admin' was deleted")
        return {"Username": username, "Deleted": True}

    def list(self) -> list[dict[str, Any]]:
        stored = _read(self.path, self.keys, self.broker_id)
        managed: tuple[UserRecord, ...] = ()
        if stored is not None and (stored.version == _MANAGED_VERSION or not self.settings.users):
            managed = stored.records
        names = self._configured_names()
        users = [
            {"Username": u.username, "Groups": sorted(u.groups), "Source": "config"}
            for u in self.settings.users
        ]
        users += [_describe(r, "managed") for r in managed if r.username not in names]
        return sorted(users, key=lambda user: str(user["Username"]))


def _describe(record: UserRecord, source: str) -> dict[str, Any]:
    """What ``sealmq user`` prints of a user (Amazon MQ's DescribeUser fields), never a hash."""
    return {
        "Username": record.username,
        "Groups": sorted(record.groups),
        "ConsoleAccess": record.console_access,
        "Source": source,
    }
