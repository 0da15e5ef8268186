"""Errors the core reports to adapters; each message is safe to show to the peer."""

from __future__ import annotations

__all__ = [
    "AuthorizationError",
    "BrokerError",
    "DestinationError",
    "LimitError",
    "SessionOwnerError",
    "SubscriptionError",
    "TransactionError",
]


class BrokerError(Exception):
    """Base of every error the core raises for a client's request."""


class AuthorizationError(BrokerError):
    """The user may not do that on that destination (the authorization map says no)."""


class DestinationError(BrokerError):
    """The destination named cannot be used that way (bad name, wildcard send, foreign temp)."""


class SubscriptionError(BrokerError):
    """The subscription cannot be made (durable one already active, no client id, unknown id)."""


class LimitError(BrokerError):
    """A limit of ``[limits]`` is reached (connections, subscriptions, destinations)."""


class SessionOwnerError(BrokerError):
    """The client id's session belongs to another user: the connection is refused."""


class TransactionError(BrokerError):
    """Unknown, duplicate or already finished transaction."""
