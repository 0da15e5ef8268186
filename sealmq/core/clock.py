"""The core's clock and timers: one port, so a test can drive time by hand.

Everything in the core that reads the time or waits for it (expiry, redelivery
delay, expiry sweeps, the lazy write of a batch of acks, the dispatch tick)
goes through a :class:`Clock`. :class:`AsyncioClock` is the real one, on the
running event loop; :class:`FakeClock` stands still until a test advances it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["AsyncioClock", "Clock", "FakeClock", "Timer"]


class Timer(Protocol):
    """A pending callback; cancelling one already run or cancelled does nothing."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time, monotonic time, and callbacks later or at the end of this loop tick."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (message timestamps and expiry)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (durations)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds from now; keep the timer to cancel it."""
        ...

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, after what this loop tick is doing (the dispatch tick)."""
        ...


class AsyncioClock:
    """The real clock: the system's time and the running event loop's timers."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)

    def call_soon(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told: :meth:`advance` runs the timers that fall due.

    ``call_soon`` still goes to the running event loop when there is one (a tick is
    not time: ``await asyncio.sleep(0)`` runs it), else it waits for the next
    :meth:`advance` (``advance(0)`` runs it), so a test never sleeps.
    """

    def __init__(self, now_ms: int = 1_000_000) -> None:
        #: Wall time in milliseconds; tests may set it directly (timers do not fire then).
        self.now = now_ms
        self._mono = 0.0
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()
        self._soon: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(self._mono + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        try:
            asyncio.get_running_loop().call_soon(callback)
        except RuntimeError:
            self._soon.append(callback)

    @property
    def pending(self) -> int:
        """Timers not yet run nor cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer due by then, in order of due time."""
        end = self._mono + seconds
        self._run_soon()
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            step = when - self._mono
            self._mono = when
            self.now += round(step * 1000)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
            self._run_soon()
        self.now += round((end - self._mono) * 1000)
        self._mono = end

    def _run_soon(self) -> None:
        while self._soon:
            soon, self._soon = self._soon, []
            for callback in soon:
                callback()
