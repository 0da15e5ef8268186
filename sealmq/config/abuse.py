"""Reading the abuse limits of ``[limits]`` (connections, subscriptions, destinations,
failed-login throttling); ``loader.py`` calls it with its reader and the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sealmq.config.settings import LimitSettings

if TYPE_CHECKING:
    from sealmq.config.loader import _Reader

__all__ = ["ABUSE_LIMIT_KEYS", "read_abuse_limits"]

_COUNTS = (
    "max_connections",
    "max_connections_per_user",
    "max_connections_per_address",
    "max_subscriptions_per_connection",
    "max_destinations",
    "max_login_failures",
)
ABUSE_LIMIT_KEYS = (*_COUNTS, "login_lockout")
#: Far above what one broker holds, below what would overflow anything.
_MAX_COUNT = 10_000_000
#: A day: a longer lockout is a ban, which is the operator's to decide.
_MAX_LOCKOUT_SECONDS = 86_400.0


def read_abuse_limits(
    reader: _Reader, table: Mapping[str, Any], defaults: LimitSettings
) -> dict[str, Any]:
    values: dict[str, Any] = {
        key: reader.integer(table, key, "limits.", getattr(defaults, key), low=0, high=_MAX_COUNT)
        for key in _COUNTS
    }
    values["login_lockout"] = reader.seconds(
        table, "login_lockout", "limits.", defaults.login_lockout, _MAX_LOCKOUT_SECONDS
    )
    return values
