"""The one error the OpenWire codec raises."""

from __future__ import annotations

__all__ = ["OpenWireError"]


class OpenWireError(Exception):
    """Malformed input: the connection gets a ``ConnectionError`` saying this, then closes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
