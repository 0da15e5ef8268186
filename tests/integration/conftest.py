from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BrokerThread, ProcessBrokers, make_settings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker with STOMP over TLS on a free 127.0.0.1 port, run through ``app.start``."""
    thread = BrokerThread(make_settings(tmp_path / "data")).start()
    yield thread
    thread.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessBrokers]:
    """Brokers as real ``sealmq serve`` processes (for kill -9 and restarts), killed at teardown."""
    made = ProcessBrokers(tmp_path)
    yield made
    made.close_all()
