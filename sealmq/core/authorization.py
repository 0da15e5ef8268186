"""Who may do what on which destination: ActiveMQ's ``authorizationPlugin`` map.

Entries name a queue or topic pattern (``*`` one level, ``>`` the rest) and the
groups allowed to ``read`` (subscribe, consume, browse), ``write`` (send) and
``admin`` (create the destination by its first use). As in ActiveMQ's
``DefaultAuthorizationMap``:

- a destination's groups for an operation are the *union* of every matching
  entry's (a more specific entry adds groups, it cannot take any away);
- nothing matching means nobody (default deny once a map is configured);
- the group ``*`` is every authenticated user;
- temporary destinations are governed by one separate entry
  (``tempDestinationAuthorizationEntry``); without it every authenticated user
  may create, send to and read them. Reading another connection's temporary
  destination is always refused (ActiveMQ's clients refuse it themselves).

Advisory topics (``ActiveMQ.Advisory.>``) are the broker's: read as the map grants,
with no admin needed to use them first, and never written by a client. (ActiveMQ's
users need write and admin on them too, because its broker publishes advisories in
the security context of the user whose action they report; sealmq publishes them as
itself.)

A wildcard subscription is checked with the entries that cover the whole
pattern (:func:`~sealmq.core.wildcards.covers`): subscribing to ``orders.>``
needs read granted on ``orders.>`` or wider, so it never reaches a topic the
user could not subscribe to one by one. ActiveMQ also counts entries *below*
the pattern, which lets a user granted ``orders.public.>`` read ``orders.>``.

The core asks :meth:`AuthorizationMap.allows`; each connection remembers the
answer per destination (``Connection``), so a send costs one dict lookup.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from sealmq.core.model import Destination
from sealmq.core.security import Principal
from sealmq.core.wildcards import covers

__all__ = [
    "ADVISORY_PREFIX",
    "EVERYONE",
    "AuthorizationEntry",
    "AuthorizationMap",
    "Permission",
    "TemporaryDestinationEntry",
]

#: Topics the broker itself publishes on (ActiveMQ's advisories). Clients may read them
#: as the map allows (no admin needed: they are the broker's), and never write them.
ADVISORY_PREFIX = "ActiveMQ.Advisory."
#: The group that stands for every authenticated user (ActiveMQ's wildcard group).
EVERYONE = "*"

#: Destinations whose answers a map keeps; past it, it starts over (many one-off names).
_CACHED_DECISIONS = 65536


class Permission(enum.Enum):
    """What a client asks to do with a destination."""

    READ = "read"
    """Subscribe, consume, browse."""
    WRITE = "write"
    """Send."""
    ADMIN = "admin"
    """Create the destination (its first use)."""


@dataclass(frozen=True, slots=True)
class AuthorizationEntry:
    """The groups allowed each operation on the destinations ``pattern`` selects."""

    pattern: Destination
    read: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()

    def groups(self, permission: Permission) -> frozenset[str]:
        groups: frozenset[str] = getattr(self, permission.value)  # fields named as permissions
        return groups

    def selects(self, destination: Destination) -> bool:
        return self.pattern.is_queue == destination.is_queue and covers(
            self.pattern.name, destination.name
        )


@dataclass(frozen=True, slots=True)
class TemporaryDestinationEntry:
    """The groups allowed each operation on every temporary queue and topic."""

    read: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()

    def groups(self, permission: Permission) -> frozenset[str]:
        groups: frozenset[str] = getattr(self, permission.value)  # fields named as permissions
        return groups


class AuthorizationMap:
    """The configured entries; answers are computed once per destination and kept."""

    def __init__(
        self,
        entries: Iterable[AuthorizationEntry],
        temporary: TemporaryDestinationEntry | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self.temporary = temporary
        #: (permission, is_queue, name) -> the groups allowed; None: every user.
        self._decided: dict[tuple[Permission, bool, str], frozenset[str] | None] = {}

    def groups_for(self, permission: Permission, destination: Destination) -> frozenset[str] | None:
        """The groups allowed ``permission`` on ``destination``; None when every
        authenticated user is (the group ``*``, or temporary destinations without
        a temporary entry)."""
        key = (permission, destination.is_queue, destination.name)
        if destination.is_temporary:
            key = (permission, destination.is_queue, "\x00temporary")
        try:
            return self._decided[key]
        except KeyError:
            pass
        groups: frozenset[str] | None
        if destination.is_temporary:
            groups = None if self.temporary is None else self.temporary.groups(permission)
        else:
            found: set[str] = set()
            for entry in self.entries:
                if entry.selects(destination):
                    found.update(entry.groups(permission))
            groups = frozenset(found)
        if groups is not None and EVERYONE in groups:
            groups = None
        if len(self._decided) >= _CACHED_DECISIONS:
            self._decided.clear()
        self._decided[key] = groups
        return groups

    def allows(
        self, principal: Principal, permission: Permission, destination: Destination
    ) -> bool:
        """Whether ``principal`` (through its groups) may do ``permission`` on ``destination``."""
        groups = self.groups_for(permission, destination)
        return groups is None or not groups.isdisjoint(principal.groups)
