"""``sealmq store verify`` and ``sealmq store salvage``: the journal, the broker stopped.

Both hold the run lock (refused while ``sealmq serve`` runs on the folder) and
the store's folder lock, and reach the broker's data keys through the same key
provider the broker uses (``sealmq.control.keys``). See :mod:`sealmq.store.salvage`.
"""

from __future__ import annotations

import logging
from typing import Any

from sealmq.config import Settings
from sealmq.control.keys import open_backend
from sealmq.control.operations import open_embedded_service, open_file_store, require_record
from sealmq.control.state import RunLock
from sealmq.store.salvage import Examination, examine, salvage

__all__ = ["salvage_store", "verify_store"]

log = logging.getLogger("sealmq.control")


def _run(settings: Settings, *, repair: bool) -> Examination:
    record = require_record(settings)
    with RunLock(settings.data_dir, what="the broker"):
        service = None if settings.encryption.external else open_embedded_service(settings)
        backend = open_backend(settings, service)
        provider = None
        try:
            provider = backend.provider(record)
            store = open_file_store(settings, provider, record.broker_id)
            try:
                return salvage(store) if repair else examine(store)
            finally:
                store.close_unopened()
        finally:
            close = getattr(provider, "close", None)
            if callable(close):
                close()
            backend.close()
            if service is not None:
                service.close()


def verify_store(settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Read and authenticate the whole journal; whether it is intact, and the report."""
    found = _run(settings, repair=False)
    return found.intact, {"DataDir": str(settings.data_dir), **found.report()}


def salvage_store(settings: Settings) -> dict[str, Any]:
    """Set aside what cannot be recovered so that the broker starts on the rest; the report."""
    found = _run(settings, repair=True)
    if found.salvaged:
        # Counts only: names stay on the operator's terminal.
        log.warning(
            "store salvaged: %d segments set aside, %d messages lost",
            len(found.set_aside),
            len(found.lost.messages),
        )
    return {"DataDir": str(settings.data_dir), **found.report()}
