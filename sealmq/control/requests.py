"""Asking a running broker to do something: a request file and SIGUSR1.

``sealmq broker rotate-data-keys`` writes ``<data_dir>/control/<id>.request``
(JSON ``{"action": ...}``, 0600), sends the broker process (its pid is in
``status.json``) ``SIGUSR1``, and waits for ``<data_dir>/control/<id>.result``.
The broker, on the signal (and once at start, for requests sent while it was
starting), runs every pending request, writes its result, and removes the
request. Only someone who may write to the data folder can ask, which is who
may read the keys anyway; a request names an action, never data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sealmq.control.state import read_status, write_json_private

__all__ = [
    "CONTROL_DIR",
    "REQUEST_SIGNAL",
    "RequestTimeoutError",
    "ask_running_broker",
    "run_pending_requests",
]

log = logging.getLogger("sealmq.control")

CONTROL_DIR = "control"
REQUEST_SIGNAL = signal.SIGUSR1
_REQUEST = ".request"
_RESULT = ".result"

Handler = Callable[[], Awaitable[dict[str, Any]]]


class RequestTimeoutError(Exception):
    """The running broker did not answer a request in time."""


def _control_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / CONTROL_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def ask_running_broker(
    data_dir: Path, action: str, *, timeout: float, poll: float = 0.05
) -> dict[str, Any]:
    """Have the broker serving ``data_dir`` run ``action``; returns its result document.

    Raises :class:`RequestTimeoutError` (the request is withdrawn) or ``OSError``
    (no process to signal).
    """
    folder = _control_dir(data_dir)
    request_id = uuid.uuid4().hex
    request = folder / f"{request_id}{_REQUEST}"
    result = folder / f"{request_id}{_RESULT}"
    write_json_private(request, {"action": action})
    status = read_status(data_dir) or {}
    pid = status.get("Pid")
    try:
        if not isinstance(pid, int) or pid <= 0:
            raise ProcessLookupError(f"no broker process id in {Path(data_dir) / 'status.json'}")
        os.kill(pid, REQUEST_SIGNAL)
        deadline = time.monotonic() + timeout
        while not result.exists():
            if time.monotonic() > deadline:
                raise RequestTimeoutError(
                    f"the broker (pid {pid}) did not answer {action} within {timeout:g} s"
                )
            time.sleep(poll)
        doc: dict[str, Any] = json.loads(result.read_text())
    finally:
        with contextlib.suppress(FileNotFoundError):
            request.unlink()
        with contextlib.suppress(FileNotFoundError):
            result.unlink()
    return doc


async def run_pending_requests(data_dir: Path, handlers: Mapping[str, Handler]) -> int:
    """Broker side: answer every pending request; returns how many were answered."""
    folder = Path(data_dir) / CONTROL_DIR
    if not folder.is_dir():
        return 0
    answered = 0
    for request in sorted(folder.glob(f"*{_REQUEST}")):
        result = request.with_name(request.name[: -len(_REQUEST)] + _RESULT)
        try:
            action = json.loads(request.read_text()).get("action")
        except (OSError, ValueError, AttributeError):
            continue  # being written, or withdrawn
        handler = handlers.get(action) if isinstance(action, str) else None
        if handler is None:
            doc: dict[str, Any] = {"ok": False, "error": f"unknown request {str(action)[:64]!r}"}
        else:
            log.info("control request: %s", action)
            try:
                doc = {"ok": True, **(await handler())}
            except Exception as exc:
                log.error("control request %s failed: %s", action, exc)
                doc = {"ok": False, "error": str(exc) or type(exc).__name__}
        with contextlib.suppress(FileNotFoundError):
            request.unlink()
        try:
            write_json_private(result, doc)
        except OSError as exc:
            log.error("cannot answer control request %s: %s", action, exc)
        answered += 1
    return answered
