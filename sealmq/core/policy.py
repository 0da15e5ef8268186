"""Per-destination policy, as ActiveMQ's ``<destinationPolicy>`` map gives it.

``[policy]`` holds the defaults every destination gets; ``[[policy.destinations]]``
entries name a queue or topic (wildcards allowed) and override some of them. A
destination takes the one entry that matches it most specifically, as ActiveMQ picks
one ``policyEntry``; what that entry leaves unset comes from ``[policy]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sealmq.core.model import Destination, DestinationKind
from sealmq.core.wildcards import is_wildcard, matches

__all__ = [
    "INDIVIDUAL",
    "POLICY_FIELDS",
    "SHARED",
    "DestinationPolicy",
    "PolicyEntry",
    "PolicyMap",
]

#: Dead-letter strategies (ActiveMQ's sharedDeadLetterStrategy, individualDeadLetterStrategy).
SHARED = "shared"
INDIVIDUAL = "individual"


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """How one destination treats its messages; the defaults are ActiveMQ's."""

    #: Redeliveries before a message goes to the dead-letter queue (ActiveMQ: 6); -1: never.
    maximum_redeliveries: int = 6
    #: Wait before a redelivered message is offered again, in milliseconds.
    redelivery_delay_ms: int = 0
    #: Multiply the wait by ``back_off_multiplier`` at each further redelivery (ActiveMQ's
    #: ``useExponentialBackOff``), up to ``maximum_redelivery_delay_ms`` (-1: no cap).
    use_exponential_back_off: bool = False
    back_off_multiplier: float = 5.0
    maximum_redelivery_delay_ms: int = -1
    #: Dead-letter non-persistent messages too, rather than drop them (ActiveMQ's
    #: ``processNonPersistent``, off by default).
    process_non_persistent: bool = False
    #: Dead-letter expired messages (ActiveMQ's ``processExpired``, on by default); off:
    #: they are dropped.
    process_expired: bool = True
    #: ``shared``: every dead letter goes to ``dead_letter_queue``; ``individual``: to a
    #: queue of its own destination's, ``<prefix><name>``.
    dead_letter_strategy: str = SHARED
    dead_letter_queue: str = "ActiveMQ.DLQ"
    #: Individual strategy: the prefixes before a queue's and a topic's name.
    dead_letter_queue_prefix: str = "ActiveMQ.DLQ.Queue."
    dead_letter_topic_prefix: str = "ActiveMQ.DLQ.Topic."
    #: Prefetch for consumers that name none (ActiveMQ's queue prefetch).
    default_prefetch: int = 1000
    #: Messages a non-durable topic subscription holds for a consumer that cannot take
    #: them before the oldest is discarded (ActiveMQ's constantPendingMessageLimitStrategy);
    #: -1: no limit.
    pending_message_limit: int = 1000
    #: Bytes of queued messages a queue or durable subscription keeps in memory; past
    #: it persistent messages stay only in the store and are paged in as the window
    #: drains (ActiveMQ's ``memoryLimit`` with its store cursor).
    memory_limit: int = 32 * 1024 * 1024

    def redelivery_delay_for(self, redelivery: int) -> int:
        """The wait in ms before redelivery number ``redelivery`` (1 for the first)."""
        delay = self.redelivery_delay_ms
        if self.use_exponential_back_off and redelivery > 1 and delay > 0:
            cap = self.maximum_redelivery_delay_ms
            for _ in range(redelivery - 1):
                delay = int(delay * self.back_off_multiplier)
                if 0 <= cap <= delay:
                    return cap
        cap = self.maximum_redelivery_delay_ms
        return min(delay, cap) if cap >= 0 else delay

    def dead_letter_queue_for(self, destination: Destination) -> str:
        """The queue a dead letter from ``destination`` goes to."""
        if self.dead_letter_strategy == INDIVIDUAL:
            prefix = (
                self.dead_letter_queue_prefix
                if destination.is_queue
                else self.dead_letter_topic_prefix
            )
            return prefix + destination.name
        return self.dead_letter_queue

    def is_dead_letter_queue(self, name: str) -> bool:
        """Whether queue ``name`` is where this policy sends dead letters (never re-sent)."""
        if self.dead_letter_strategy == INDIVIDUAL:
            return name.startswith((self.dead_letter_queue_prefix, self.dead_letter_topic_prefix))
        return name == self.dead_letter_queue


#: The fields an entry may override.
POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(DestinationPolicy))


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """Overrides for the destinations ``pattern`` names (a queue or topic pattern)."""

    pattern: Destination
    overrides: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        unknown = [name for name, _ in self.overrides if name not in POLICY_FIELDS]
        if unknown:
            raise ValueError(f"not a destination policy setting: {', '.join(unknown)}")

    @classmethod
    def of(cls, pattern: Destination, **overrides: Any) -> PolicyEntry:
        return cls(pattern, tuple(overrides.items()))

    def selects(self, destination: Destination) -> bool:
        return self.pattern.is_queue == destination.is_queue and matches(
            self.pattern.name, destination.name
        )

    def specificity(self) -> tuple[int, int, int]:
        """Higher is more specific: an exact name, then more literal levels, then ``*``
        over ``>`` (which matches any depth)."""
        name = self.pattern.name
        if not is_wildcard(name):
            return (1, 0, 0)
        parts = name.split(".")
        literal = sum(1 for part in parts if part not in ("*", ">"))
        return (0, literal, 0 if ">" in parts else 1)


class PolicyMap:
    """The policy of each destination: the most specific matching entry over the defaults.

    On a tie, the entry listed later wins. Lookups are remembered per destination (the
    map never changes while the broker runs).
    """

    def __init__(
        self, default: DestinationPolicy | None = None, entries: Iterable[PolicyEntry] = ()
    ) -> None:
        self.default = default or DestinationPolicy()
        self.entries = tuple(entries)
        self._resolved: dict[tuple[bool, str], DestinationPolicy] = {}

    def for_destination(self, destination: Destination) -> DestinationPolicy:
        key = (destination.is_queue, destination.name)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(destination)
            if len(self._resolved) >= 65536:
                self._resolved.clear()  # many short-lived names: start over
            self._resolved[key] = found
        return found

    def _resolve(self, destination: Destination) -> DestinationPolicy:
        best: PolicyEntry | None = None
        for entry in self.entries:
            if entry.selects(destination) and (
                best is None or entry.specificity() >= best.specificity()
            ):
                best = entry
        if best is None:
            return self.default
        return dataclasses.replace(self.default, **dict(best.overrides))

    def for_queue(self, name: str) -> DestinationPolicy:
        return self.for_destination(Destination(DestinationKind.QUEUE, name))

    def for_topic(self, name: str) -> DestinationPolicy:
        return self.for_destination(Destination(DestinationKind.TOPIC, name))
