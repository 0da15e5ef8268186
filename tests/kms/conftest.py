"""Fixtures: the key service served over TLS on a free port, and boto3 clients of it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sealmq.kms.service import open_key_service
from sealmq.kms.wire import WireHandler
from tests.kms.support import TIMEOUT, Certs, FakeClock, Kms, mint_certs, serve, stop


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return mint_certs(tmp_path_factory.mktemp("kms-certs"))


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop in a background thread for every served key service."""
    event_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=event_loop.run_forever, name="kms-loop", daemon=True)
    thread.start()
    yield event_loop
    event_loop.call_soon_threadsafe(event_loop.stop)
    thread.join(TIMEOUT)
    event_loop.close()


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    return boto3.session.Session()


@pytest.fixture
def kms(
    tmp_path: Path,
    certs: Certs,
    loop: asyncio.AbstractEventLoop,
    boto_session: boto3.session.Session,
) -> Iterator[Kms]:
    """A fresh key service (min pending window 1 day) served over TLS."""
    clock = FakeClock()
    data_dir = tmp_path / "data"
    service = open_key_service(data_dir, min_pending_window_days=1, clock=clock)
    holder: list[Kms] = []
    handler = WireHandler(service, clock=lambda: time.time() + holder[0].wire_skew)
    server = serve(loop, handler, certs.server_context())
    made = Kms(service, server, server.port, certs, data_dir, clock, boto_session)
    holder.append(made)
    yield made
    made.close()
    stop(loop, server)
    service.close()


@pytest.fixture
def admin(kms: Kms) -> Any:
    """A boto3 client with the admin's credentials."""
    return kms.client()
