"""Errors the core reports to adapters; each message is safe to show to the peer."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "DestinationError",
    "SubscriptionError",
    "TransactionError",
]


class BrokerError(Exception):
    """Base of every error the core raises for a client's request."""


class DestinationError(BrokerError):
    """The destination named cannot be used that way (bad name, wildcard send, foreign temp)."""


class SubscriptionError(BrokerError):
    """The subscription cannot be made (durable one already active, no client id, unknown id)."""


class TransactionError(BrokerError):
    """Unknown, duplicate or already finished transaction."""
