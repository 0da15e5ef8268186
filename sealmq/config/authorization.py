"""Reading ``[[authorization]]`` and ``[security.temporary_destinations]``.

Kept apart from ``loader.py`` (which calls it with its reader) so that each file
stays a size one can read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sealmq.config.checks import kind
from sealmq.config.settings import AuthorizationSettings, TemporaryDestinationSettings

if TYPE_CHECKING:
    from sealmq.config.loader import _Reader

__all__ = ["read_authorization", "read_temporary_destinations"]

_PERMISSIONS = ("read", "write", "admin")
# Amazon MQ's rule for group names, or "*" (every authenticated user, as in ActiveMQ).
_GROUP_RE = re.compile(r"[A-Za-z0-9._~-]{1,100}|\*")
# A dot-separated destination name whose levels are words, "*" or a final ">".
_LEVEL_RE = re.compile(r"[^.*>\s]+|\*|>")


def check_acl(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"expected an array of group names, got {kind(value)}"
    for item in value:
        if not isinstance(item, str):
            return f"group names must be strings, got {kind(item)}"
        if not _GROUP_RE.fullmatch(item):
            return (
                f"invalid group name {item!r}: 1-100 of A-Z, a-z, 0-9, '-', '.', '_', '~', "
                'or "*" for every user'
            )
    return None


def check_pattern(value: str) -> str | None:
    scheme, sep, name = value.partition("://")
    if not sep or scheme not in ("queue", "topic"):
        return 'must start with "queue://" or "topic://" (temporary destinations: ' + (
            "[security.temporary_destinations])"
        )
    levels = name.split(".")
    if not name or not all(_LEVEL_RE.fullmatch(level) for level in levels):
        return f"{name!r} is not a destination pattern (dot-separated names, '*', '>')"
    if ">" in levels[:-1]:
        return "'>' may only be the last level"
    return None


def _acls(reader: _Reader, table: Mapping[str, Any], prefix: str) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(reader.value(table, name, prefix, [], check_acl)) for name in _PERMISSIONS
    }


def read_authorization(
    reader: _Reader, doc: Mapping[str, Any]
) -> tuple[AuthorizationSettings, ...]:
    entries = doc.get("authorization", [])
    if not isinstance(entries, list):
        reader.error(
            "authorization", f"expected an array of tables ([[authorization]]), got {kind(entries)}"
        )
        return ()
    result = []
    for index, entry in enumerate(entries):
        prefix = f"authorization[{index}]."
        if not isinstance(entry, dict):
            reader.error(f"authorization[{index}]", f"expected a table, got {kind(entry)}")
            continue
        reader.unknown_keys(entry, prefix, ("destination", *_PERMISSIONS))
        if "destination" not in entry:
            reader.error(prefix + "destination", "required")
        destination = reader.string(entry, "destination", prefix, "", check_pattern)
        acls = _acls(reader, entry, prefix)
        if destination:
            result.append(AuthorizationSettings(destination, **acls))
    return tuple(result)


def read_temporary_destinations(
    reader: _Reader, security: Mapping[str, Any]
) -> TemporaryDestinationSettings | None:
    if "temporary_destinations" not in security:
        return None
    table = reader.table(security, "temporary_destinations", "security.", _PERMISSIONS)
    return TemporaryDestinationSettings(**_acls(reader, table, "security.temporary_destinations."))
