"""What happens in the core, told to whoever listens: metrics, advisories, network demand.

The core emits typed, frozen events on one :class:`EventBus` per broker;
the broker's owners (the control layer's metrics, later advisories and the
network of brokers) subscribe handlers by event type. Handlers run at once, on
the event loop, in the order registered; one that raises is logged and the
core goes on. An event carries names and ids, never a message body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sealmq.core.model import Destination

__all__ = [
    "Connected",
    "DeadLettered",
    "DestinationCreated",
    "DestinationRemoved",
    "Disconnected",
    "Event",
    "EventBus",
    "Expired",
    "SlowConsumer",
    "Subscribed",
    "Unsubscribed",
]

log = logging.getLogger("sealmq.core.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every core event."""


@dataclass(frozen=True, slots=True)
class Connected(Event):
    connection_id: str
    client_id: str | None
    username: str | None


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    connection_id: str
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Subscribed(Event):
    connection_id: str
    consumer_id: str
    destination: Destination
    durable_name: str | None = None
    browser: bool = False


@dataclass(frozen=True, slots=True)
class Unsubscribed(Event):
    connection_id: str
    consumer_id: str
    destination: Destination


@dataclass(frozen=True, slots=True)
class DestinationCreated(Event):
    destination: Destination


@dataclass(frozen=True, slots=True)
class DestinationRemoved(Event):
    destination: Destination


@dataclass(frozen=True, slots=True)
class DeadLettered(Event):
    """A message left its queue for the dead-letter queue (or was dropped, when
    ``dead_letter_queue`` is None: a non-persistent one, as ActiveMQ does)."""

    message_id: str
    destination: Destination
    cause: str
    dead_letter_queue: str | None


@dataclass(frozen=True, slots=True)
class Expired(Event):
    message_id: str
    destination: Destination


@dataclass(frozen=True, slots=True)
class SlowConsumer(Event):
    """A subscription started (``discarded`` 0) or ended an episode of discarding
    past its pending limit, having discarded ``discarded`` messages in it."""

    connection_id: str | None
    consumer_id: str | None
    queue: str
    discarded: int


E = TypeVar("E", bound=Event)


class EventBus:
    """Handlers by event type; :meth:`emit` calls those of the event's type and its bases."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Callable[[Any], None]]] = {}

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` with every event of ``kind`` (``Event``: all); returns the
        function that unsubscribes it."""
        handlers = self._handlers.setdefault(kind, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def wants(self, kind: type[Event]) -> bool:
        """Whether anybody listens to ``kind``: emitters skip building unwanted events."""
        return any(issubclass(kind, k) and h for k, h in self._handlers.items())

    def emit(self, event: Event) -> None:
        for kind in type(event).__mro__:
            for handler in tuple(self._handlers.get(kind, ())):
                try:
                    handler(event)
                except Exception:
                    log.exception("event handler failed on %s", type(event).__name__)
