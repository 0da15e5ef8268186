from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BrokerThread, make_settings


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    """A broker with STOMP over TLS on a free 127.0.0.1 port, run through ``app.start``."""
    thread = BrokerThread(make_settings(tmp_path / "data")).start()
    yield thread
    thread.stop()
