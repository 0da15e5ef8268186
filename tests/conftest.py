"""Suite-wide test settings, and a report of slow tests that are not marked ``slow``."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support import close_stomp_leftovers

# Hypothesis' per-example deadline measures wall time, which a loaded 2-core CI
# machine stretches; the examples' own work is bounded, so no deadline.
settings.register_profile("sealmq", deadline=None)
settings.load_profile("sealmq")

#: What ``@pytest.mark.slow`` means: a test (setup, call and teardown) taking longer
#: than this many seconds on an idle 2-core machine. ``make test-fast`` leaves those
#: out; ``make test`` and CI run everything. Scaled like every wait in the suite.
SLOW_SECONDS = 5.0 * float(os.environ.get("SEALMQ_TEST_TIMEOUT_FACTOR", "1"))


@pytest.fixture(autouse=True)
def _stomp_leftovers() -> Iterator[None]:
    """After each test (and after its brokers stopped), the stomp.py connections
    it left open are closed."""
    yield
    close_stomp_leftovers()


_durations: defaultdict[str, float] = defaultdict(float)
_marked_slow: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] += report.duration
    if "slow" in report.keywords:
        _marked_slow.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    unmarked = sorted(
        ((seconds, nodeid) for nodeid, seconds in _durations.items() if nodeid not in _marked_slow),
        reverse=True,
    )
    unmarked = [(seconds, nodeid) for seconds, nodeid in unmarked if seconds > SLOW_SECONDS]
    if not unmarked:
        return
    terminalreporter.section(f"over {SLOW_SECONDS:g} s but not marked slow")
    for seconds, nodeid in unmarked:
        terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")
    terminalreporter.write_line(
        "mark them @pytest.mark.slow (or make them faster) so `make test-fast` stays fast"
    )
