"""Asking a running broker to do something: a request file and SIGUSR1.

``sealmq broker rotate-data-keys`` writes ``<data_dir>/control/<id>.request``
(JSON ``{"action": ...}``, 0600), sends the broker process (its pid is in
``status.json``) ``SIGUSR1``, and waits for ``<data_dir>/control/<id>.result``.
The broker, on the signal (and once at start, for requests sent while it was
starting), runs every pending request, writes its result, and removes the
request. Only someone who may write to the data folder can ask, which is who
may read the keys anyway; a request names an action, never data.

The asker never waits unbounded: it gives up at its deadline
(:class:`RequestTimeoutError`) and as soon as no process holds the data folder's
run lock any more (:class:`BrokerStoppedError`: the broker died or stopped before
answering). Either way it withdraws its request, so a broker started later does
not act on it; a broker that finishes a request whose asker gave up logs that it
is done and writes no result.
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

from sealmq.control.state import is_running, read_status, write_json_private
from sealmq.kms.files import make_private_dir

__all__ = [
    "CONTROL_DIR",
    "REQUEST_SIGNAL",
    "BrokerStoppedError",
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


class BrokerStoppedError(RequestTimeoutError):
    """The broker stopped (or died) before it answered a request."""


def _control_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / CONTROL_DIR
    make_private_dir(path)
    return path


def ask_running_broker(
    data_dir: Path,
    action: str,
    *,
    timeout: float,
    poll: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Have the broker serving ``data_dir`` run ``action``; returns its result document.

    ``timeout`` (seconds) bounds the whole wait; ``progress`` is told, once the
    broker was signalled, what is being waited for. Raises
    :class:`BrokerStoppedError` when the broker stops before answering,
    :class:`RequestTimeoutError` at the deadline (the request is withdrawn either
    way) or ``OSError`` (no process to signal).
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
        deadline = time.monotonic() + timeout
        try:
            os.kill(pid, REQUEST_SIGNAL)
        except ProcessLookupError:
            # Gone between its status and the signal (or the status is stale).
            raise BrokerStoppedError(
                f"the broker (pid {pid}) is not running, so nothing was asked of it: "
                f"start it (`sealmq serve`) and repeat the command"
            ) from None
        if progress is not None:
            progress(f"asked the broker (pid {pid}) to {action}; waiting up to {timeout:g} s")
        while not result.exists():
            # The run lock, not the pid: it is released however the process ends, and a
            # reused pid does not hold it. The result is looked for once more after,
            # in case the broker answered and then stopped.
            if not is_running(data_dir) and not result.exists():
                raise BrokerStoppedError(
                    f"the broker (pid {pid}) stopped before it answered {action}; nothing "
                    "was confirmed: start it again (`sealmq serve`), check its log, and "
                    "repeat the command"
                )
            if time.monotonic() > deadline:
                raise RequestTimeoutError(
                    f"the broker (pid {pid}) did not answer {action} within {timeout:g} s; "
                    "it may still be working on it (its log says 'control request ... done' "
                    "when it is): check its log and `sealmq status`, and give a store that "
                    "takes longer a larger --timeout"
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
            else:
                log.info("control request %s done", action)
        if not request.exists():
            # The asker gave up (its deadline) and withdrew the request: nobody reads
            # a result now, and one left behind would never be removed.
            log.warning("control request %s: the asker stopped waiting before the end", action)
            answered += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            request.unlink()
        try:
            write_json_private(result, doc)
        except OSError as exc:
            log.error("cannot answer control request %s: %s", action, exc)
        answered += 1
    return answered
