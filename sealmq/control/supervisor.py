"""The broker's lifecycle around its key: RUNNING <-> CRITICAL_ACTION_REQUIRED.

:class:`Supervisor` owns the one thing that serves clients (a :class:`Serving`:
core, store, listeners, built by the composition root) and replaces it as the
key service's answers change:

- every ``check_interval`` seconds (the data-key cache period) it proves the
  broker may still use its key (:func:`~sealmq.control.keys.check_key_access`,
  as the storage principal), so a revoked grant or a disabled key is noticed
  within one cache period even when the broker is idle; a store write that fails
  with ``KeyUnavailableError`` triggers the same at once;
- on a refusal it enters ``CRITICAL_ACTION_REQUIRED`` with an action code
  (``INVALID_KMS_KEY`` or ``KMS_KEY_UNREACHABLE``) and what the key service said,
  logs it, records it in ``status.json``, and stops serving: listeners closed,
  every client told why (STOMP ERROR, MQTT DISCONNECT), the store flushed and
  closed. Everything durable stays on disk, still sealed;
- every ``retry_interval`` seconds it checks again; once the key answers it
  builds a new :class:`Serving` from the disk (the store recovers; nothing a
  failed write half-did survives in memory) and is ``RUNNING`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sealmq.control.keys import KeyAccessError
from sealmq.control.state import (
    ACTION_INVALID_KMS_KEY,
    CREATION_IN_PROGRESS,
    CRITICAL_ACTION_REQUIRED,
    REBOOT_IN_PROGRESS,
    RUNNING,
    STOPPED,
    ActionRequired,
    write_status,
)
from sealmq.store.errors import KeyUnavailableError

__all__ = ["BrokerNotServingError", "Serving", "Supervisor", "key_unavailable_reason"]

log = logging.getLogger("sealmq.control")


class Serving(Protocol):
    """A serving broker: core, store and client listeners, built from the disk."""

    async def stop(self, reason: str) -> None:
        """Close the listeners telling every client ``reason``; flush and close the store."""
        ...

    async def rotate_data_keys(self) -> list[int]:
        """New segments under fresh data keys; live records of older segments rewritten."""
        ...


class BrokerNotServingError(Exception):
    """The broker is not serving now (its key is unavailable, or it is stopping)."""


def key_unavailable_reason(code: str | None = None) -> str:
    """What connected clients are told when the broker stops for its key."""
    what = f" ({code})" if code else ""
    return (
        f"The broker's encryption key is unavailable{what}; the broker keeps every "
        "message and serves again once access to the key is restored"
    )


class Supervisor:
    """Runs a :class:`Serving` while the key answers; see the module docstring.

    ``open_serving`` builds one from the disk (raising ``KeyUnavailableError`` or
    :class:`KeyAccessError` when the key refuses); ``check_access`` is blocking
    and raises :class:`KeyAccessError`; ``encryption`` is what ``status.json``
    says about the key.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        broker_id: str,
        encryption: dict[str, Any],
        open_serving: Callable[[], Awaitable[Serving]],
        check_access: Callable[[], None],
        check_interval: float,
        retry_interval: float,
    ) -> None:
        self._data_dir = Path(data_dir)
        self.broker_id = broker_id
        self._encryption = encryption
        self._open_serving = open_serving
        self._check_access = check_access
        self._check_interval = check_interval
        self._retry_interval = retry_interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.state = CREATION_IN_PROGRESS
        self.actions: list[ActionRequired] = []
        self.serving: Serving | None = None
        #: Called (on the loop) after each change of state.
        self.on_state: Callable[[str], None] | None = None

    # -- state ----------------------------------------------------------------------

    def _set(self, state: str, actions: list[ActionRequired]) -> None:
        changed = (state, actions) != (self.state, self.actions)
        self.state, self.actions = state, actions
        if not changed:
            return
        try:
            write_status(
                self._data_dir,
                broker_id=self.broker_id,
                state=state,
                actions=actions,
                encryption=self._encryption,
            )
        except OSError as exc:
            log.error("cannot write %s: %s", self._data_dir / "status.json", exc)
        if self.on_state is not None:
            self.on_state(state)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Serve if the key answers, else wait in CRITICAL_ACTION_REQUIRED; then supervise."""
        self.state = ""  # so that the first _set always records CREATION_IN_PROGRESS
        self._set(CREATION_IN_PROGRESS, [])
        async with self._lock:
            try:
                self.serving = await self._open_serving()
            except (KeyUnavailableError, KeyAccessError) as exc:
                await self._enter_critical(await self._diagnose(exc))
            else:
                self._set(RUNNING, [])
        self._task = asyncio.create_task(self._monitor(), name="sealmq-key-supervisor")

    async def close(self, reason: str = "The broker is shutting down") -> None:
        """Stop supervising and serving; the status file says STOPPED."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            serving, self.serving = self.serving, None
            if serving is not None:
                await serving.stop(reason)
            self._set(STOPPED, self.actions)

    async def rotate_data_keys(self) -> list[int]:
        """Rotate the serving store's data keys; :class:`BrokerNotServingError` if none."""
        serving = self.serving
        if serving is None or self.state != RUNNING:
            raise BrokerNotServingError(f"the broker is {self.state}, not serving")
        return await serving.rotate_data_keys()

    def store_failed(self, exc: BaseException) -> None:
        """A store write failed with ``KeyUnavailableError``: stop serving now."""
        if self._closed or self.state != RUNNING:
            return
        log.error("a store write failed for lack of the key: %s", exc)
        asyncio.get_running_loop().create_task(self._critical_from(exc))

    # -- transitions -------------------------------------------------------------------

    async def _diagnose(self, exc: BaseException) -> KeyAccessError:
        """What the key service says now (the action's info), after ``exc``."""
        if isinstance(exc, KeyAccessError):
            return exc
        try:
            await asyncio.to_thread(self._check_access)
        except KeyAccessError as found:
            return found
        return KeyAccessError(ACTION_INVALID_KMS_KEY, f"A data key could not be used: {exc}")

    async def _critical_from(self, exc: BaseException) -> None:
        error = await self._diagnose(exc)
        async with self._lock:
            if self.state == RUNNING and not self._closed:
                await self._enter_critical(error)

    async def _enter_critical(self, error: KeyAccessError) -> None:
        """With the lock held: record the action, stop serving, keep everything on disk."""
        self._set(CRITICAL_ACTION_REQUIRED, [ActionRequired(error.code, error.info)])
        log.critical(
            "broker %s: %s %s: %s; listeners closed, every message kept on disk; "
            "retrying every %g s",
            self.broker_id,
            CRITICAL_ACTION_REQUIRED,
            error.code,
            error.info,
            self._retry_interval,
        )
        serving, self.serving = self.serving, None
        if serving is not None:
            try:
                await serving.stop(key_unavailable_reason(error.code))
            except Exception:
                log.exception("stopping the broker for its key failed")

    async def _monitor(self) -> None:
        while not self._closed:
            interval = self._check_interval if self.state == RUNNING else self._retry_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await asyncio.to_thread(self._check_access)
            except KeyAccessError as exc:
                async with self._lock:
                    if self._closed:
                        return
                    if self.state == RUNNING:
                        await self._enter_critical(exc)
                    elif self.state == CRITICAL_ACTION_REQUIRED:
                        self._set(self.state, [ActionRequired(exc.code, exc.info)])
                continue
            except Exception:
                log.exception("key-access check failed")
                continue
            if self.state == CRITICAL_ACTION_REQUIRED:
                await self._recover()

    async def _recover(self) -> None:
        async with self._lock:
            if self._closed or self.state != CRITICAL_ACTION_REQUIRED:
                return
            actions = self.actions
            self._set(REBOOT_IN_PROGRESS, actions)
            try:
                self.serving = await self._open_serving()
            except (KeyUnavailableError, KeyAccessError) as exc:
                await self._enter_critical(await self._diagnose(exc))
                return
            except Exception as exc:
                log.exception("cannot serve again after the key came back")
                self._set(CRITICAL_ACTION_REQUIRED, actions)
                log.error("still %s: %s", CRITICAL_ACTION_REQUIRED, exc)
                return
            log.warning("broker %s: access to its key is back; serving again", self.broker_id)
            self._set(RUNNING, [])

    def wake(self) -> None:
        """Check the key now rather than at the next interval."""
        self._wake.set()
