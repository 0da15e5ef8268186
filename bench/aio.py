"""Event-loop selection: uvloop when it is installed, unless turned off."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_use_uvloop = True


def set_uvloop(enabled: bool) -> None:
    global _use_uvloop
    _use_uvloop = enabled


def loop_name() -> str:
    return "uvloop" if _uvloop_factory() is not None else "asyncio"


def _uvloop_factory() -> Any:
    if not _use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when available."""
    factory = _uvloop_factory()
    if factory is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
