"""``[[composite_destinations]]``: ActiveMQ's configured composite queues and topics.

::

    [[composite_destinations]]
    destination = "queue://orders"          # what producers send to (no wildcards)
    forward_to = [
      "queue://orders.audit",
      "topic://orders.events",
      { destination = "queue://orders.big", selector = "amount > 1000" },
    ]
    forward_only = true                     # false: orders keeps its copy too
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sealmq.config.checks import check_bool, check_destination_pattern, kind
from sealmq.config.settings import CompositeDestinationSettings

if TYPE_CHECKING:
    from sealmq.config.loader import _Reader

__all__ = ["composite_destinations"]

_KEYS = ("destination", "forward_to", "forward_only")


def _exact(value: str) -> str | None:
    problem = check_destination_pattern(value)
    if problem is None and any(part in ("*", ">") for part in value.split("://", 1)[1].split(".")):
        return "must name one destination, without wildcards"
    return problem


def _selector(value: str) -> str | None:
    from sealmq.core.selector import SelectorError, compile_selector

    try:
        compile_selector(value)
    except SelectorError as exc:
        return str(exc)
    return None


def composite_destinations(
    reader: _Reader, doc: Mapping[str, Any]
) -> tuple[CompositeDestinationSettings, ...]:
    entries = doc.get("composite_destinations", [])
    if not isinstance(entries, list):
        reader.error(
            "composite_destinations",
            f"expected [[composite_destinations]] entries, got {kind(entries)}",
        )
        return ()
    result = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        prefix = f"composite_destinations[{i}]."
        if not isinstance(entry, dict):
            reader.error(prefix[:-1], f"expected a table, got {kind(entry)}")
            continue
        reader.unknown_keys(entry, prefix, _KEYS)
        source = reader.string(entry, "destination", prefix, "", _exact)
        if "destination" not in entry:
            reader.error(prefix + "destination", 'missing: e.g. "queue://orders"')
        elif source in seen:
            reader.error(prefix + "destination", f"{source} has an entry already")
        seen.add(source)
        forward_only = reader.value(entry, "forward_only", prefix, True, check_bool)
        targets = entry.get("forward_to")
        if not isinstance(targets, list) or not targets:
            reader.error(prefix + "forward_to", "expected a non-empty array of destinations")
            continue
        forwards = []
        for j, target in enumerate(targets):
            where = f"{prefix}forward_to[{j}]"
            if isinstance(target, str):
                target = {"destination": target}
            if not isinstance(target, dict):
                reader.error(where, f"expected a destination or a table, got {kind(target)}")
                continue
            reader.unknown_keys(target, where + ".", ("destination", "selector"))
            name = reader.string(target, "destination", where + ".", "", _exact)
            selector = reader.string(target, "selector", where + ".", "", _selector) or None
            if name:
                forwards.append((name, selector))
            elif "destination" not in target:
                reader.error(where + ".destination", "missing")
        if source and forwards:
            result.append(CompositeDestinationSettings(source, tuple(forwards), forward_only))
    return tuple(result)
