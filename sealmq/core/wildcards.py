"""ActiveMQ destination wildcards: ``.`` separates levels, ``*`` is one level, ``>`` the rest."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["covers", "is_wildcard", "matches"]


def is_wildcard(name: str) -> bool:
    return "*" in name or ">" in name


@lru_cache(maxsize=4096)
def _split(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def matches(pattern: str, name: str) -> bool:
    """Whether topic ``name`` is selected by ``pattern``.

    ``>`` matches zero or more trailing levels, so ``a.>`` selects ``a`` too:
    that is what MQTT's ``#`` means, and MQTT filters map onto these patterns.
    A leading wildcard never matches a topic that starts with ``$`` (MQTT 4.7.2).
    """
    if pattern == name:
        return True
    if not is_wildcard(pattern):
        return False
    parts = _split(pattern)
    levels = _split(name)
    if name.startswith("$") and parts[0] in ("*", ">"):
        # Topics starting with "$" (MQTT's $SYS and the like) are for exact filters only.
        return False
    for i, part in enumerate(parts):
        if part == ">":
            return True
        if i >= len(levels):
            return False
        if part != "*" and part != levels[i]:
            return False
    return len(parts) == len(levels)


def covers(pattern: str, name: str) -> bool:
    """Whether every destination ``name`` can stand for is selected by ``pattern``.

    For a plain ``name`` this is :func:`matches` without MQTT's ``$`` rule (an
    authorization entry ``>`` is about names, not subscriptions). For a wildcard
    ``name`` (a subscription), ``pattern`` must select all it can match: ``a.>``
    covers ``a.*`` and ``a.b.>``, while ``a.*`` does not cover ``a.>`` and ``a.b``
    does not cover ``a.*``.
    """
    if pattern == name:
        return True
    parts = _split(pattern)
    levels = _split(name)
    for i, part in enumerate(parts):
        if part == ">":
            return True
        if i >= len(levels):
            return False
        level = levels[i]
        if level == ">":
            return False  # only a ">" selects any depth
        if part != "*" and (level == "*" or part != level):
            return False
    return len(parts) == len(levels)
