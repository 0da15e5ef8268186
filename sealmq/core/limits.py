"""Abuse limits: what one client, user or address may make the broker hold, and how
failed logins are slowed down and then refused for a while.

Connection, subscription and destination limits are checked by the core (so every
protocol refuses the same things, each with its own error: a :class:`LimitError`);
login throttling wraps the authenticator (:class:`LoginThrottle`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LIMIT_KEYS", "BrokerLimits", "LoginThrottle", "address_host"]

log = logging.getLogger("sealmq.security")


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Ceilings the core enforces; 0 means no limit. The defaults are ActiveMQ's where
    it has one (``maximumConnections`` 1000), else room for real use with a bound."""

    max_connections: int = 1000
    """Logged-in client connections in total."""
    max_connections_per_user: int = 500
    """Connections of one user."""
    max_connections_per_address: int = 500
    """Connections from one source address (NAT'd fleets share one: raise it then)."""
    max_subscriptions_per_connection: int = 1000
    """Consumers and topic subscriptions one connection may hold."""
    max_destinations: int = 10_000
    """Queues, temporary destinations and (under an authorization map) topics in all."""


#: The ``[limits]`` keys of :class:`BrokerLimits`.
LIMIT_KEYS = tuple(BrokerLimits.__dataclass_fields__)

#: Failures (per user and per address) answered at once; each later one waits
#: ``_DELAY_STEP`` seconds more, at most ``_MAX_DELAY``, so a guesser on one
#: connection slows down while a user who mistyped twice does not notice.
_FREE_FAILURES = 3
_DELAY_STEP = 0.5
_MAX_DELAY = 5.0
#: Users and addresses tracked at most (a flood of names cannot grow the table).
_TRACKED = 10_000


def address_host(peer: str | None) -> str | None:
    """``"10.0.0.7:5000"`` → ``"10.0.0.7"``, ``"[::1]:5000"``/``"::1:5000"`` → ``"::1"``."""
    if not peer or peer == "?":
        return None
    host = peer.rpartition(":")[0] if ":" in peer else peer
    return host.strip("[]") or None


class LoginThrottle:
    """Failed logins per user and per source address, within ``window`` seconds.

    After ``_FREE_FAILURES`` failures each further refusal is answered later; after
    ``max_failures`` the user (from anywhere) or the address (for any user) is refused
    without checking the password until ``lockout`` seconds after the last failure.
    A success clears its user's count, never its address's (one valid account must
    not let an address keep guessing others). Per-user lockout lets a guesser lock a
    user out for ``lockout`` seconds: keep it short.
    """

    def __init__(
        self,
        *,
        max_failures: int = 10,
        lockout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self._clock = clock
        #: key -> (failures, time of the last one)
        self._failures: dict[str, tuple[int, float]] = {}

    def _count(self, key: str, now: float) -> int:
        entry = self._failures.get(key)
        if entry is None:
            return 0
        if now - entry[1] >= self.lockout:
            del self._failures[key]
            return 0
        return entry[0]

    def _keys(self, username: str | None, host: str | None) -> list[str]:
        keys = []
        if username:
            keys.append("user:" + username)
        if host:
            keys.append("address:" + host)
        return keys

    def locked(self, username: str | None, host: str | None) -> str | None:
        """Why a login by ``username`` from ``host`` is refused unchecked now, or None."""
        if self.max_failures <= 0:
            return None
        now = self._clock()
        for key in self._keys(username, host):
            if self._count(key, now) >= self.max_failures:
                return key.replace(":", " ", 1)
        return None

    def failed(self, username: str | None, host: str | None) -> float:
        """Count a failed login; the seconds to wait before answering it."""
        if self.max_failures <= 0:
            return 0.0
        now = self._clock()
        worst = 0
        if len(self._failures) >= _TRACKED:
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] < self.lockout}
        for key in self._keys(username, host):
            count = self._count(key, now) + 1
            self._failures[key] = (count, now)
            worst = max(worst, count)
            if count == self.max_failures:
                log.warning(
                    "login throttling: %s refused for %g s after %d failed logins",
                    key.replace(":", " ", 1),
                    self.lockout,
                    count,
                )
        return min(_MAX_DELAY, max(0, worst - _FREE_FAILURES) * _DELAY_STEP)

    def succeeded(self, username: str | None) -> None:
        if username:
            self._failures.pop("user:" + username, None)
