"""Configured composite destinations (ActiveMQ's ``compositeQueue`` / ``compositeTopic``):
what is sent to one destination is forwarded to others, each optionally through a
selector, and kept on the original too unless ``forward_only`` (ActiveMQ's default).

Forwarded copies are messages of their own (new ids), routed like any send, in the
same store record as the rest of the send. Forwarding is one level deep: a forwarded
copy is not forwarded again, so rules cannot loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sealmq.core.model import Destination, Message

__all__ = ["Forward", "ForwardingRule", "Forwards"]

#: A rule as used: forward-only, then each target with its compiled selector.
_Compiled = tuple[bool, list[tuple[Destination, Callable[[Message], bool] | None]]]


@dataclass(frozen=True, slots=True)
class Forward:
    destination: Destination
    #: Only what this selects is forwarded there (ActiveMQ's ``filteredDestination``).
    selector: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardingRule:
    source: Destination
    forwards: tuple[Forward, ...]
    forward_only: bool = True


class Forwards:
    """The rules by source destination, their selectors compiled once."""

    def __init__(self, rules: Iterable[ForwardingRule] = ()) -> None:
        self._rules: dict[
            Destination, tuple[bool, list[tuple[Destination, Callable[[Message], bool] | None]]]
        ] = {}
        for rule in rules:
            compiled = []
            for forward in rule.forwards:
                test = None
                if forward.selector:
                    from sealmq.core.selector import compile_selector

                    test = compile_selector(forward.selector)
                compiled.append((forward.destination, test))
            self._rules[rule.source] = (rule.forward_only, compiled)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def targets(self, message: Message, destination: Destination) -> list[Destination] | None:
        """Where a send of ``message`` to ``destination`` goes; None if no rule names it."""
        rule = self._rules.get(destination)
        if rule is None:
            return None
        forward_only, forwards = rule
        out = [] if forward_only else [destination]
        out.extend(d for d, test in forwards if test is None or test(message))
        return out
