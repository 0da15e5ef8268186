"""STOMP 1.0/1.1/1.2 wire codec, sans-IO (see docs/stomp-codec.md)."""

from __future__ import annotations

from .codec import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECT_FRAME,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    Limits,
    StompCodec,
)
from .errors import StompError
from .frames import Frame, Heartbeat

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECT_FRAME",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "Frame",
    "Heartbeat",
    "Limits",
    "StompCodec",
    "StompError",
]
