"""Sans-IO OpenWire framing and wire-format negotiation.

Each command is a 4-byte size, then the command: its type byte and its fields, in
loose or tight encoding. Both peers send a ``WireFormatInfo`` first (loose); what is
negotiated is what both support, and applies to every command after it. This codec
offers tight encoding (unless told not to) but never the marshalling cache, so
commands are uncached and size prefixed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from sealmq.wire.openwire.errors import OpenWireError
from sealmq.wire.openwire.marshal import (
    MAGIC,
    Structure,
    Typed,
    decode_primitive_map,
    encode_primitive_map,
    read_structure,
    read_tight_structure,
    write_structure,
    write_tight_structure,
)
from sealmq.wire.openwire.schema import Type

__all__ = ["MIN_VERSION", "VERSION", "Negotiated", "OpenWireCodec"]

#: The wire version this codec speaks: ActiveMQ 5.15 to 5.18 clients offer 12.
VERSION = 12
#: Clients offering less are refused: versions 1-11 marshal fields this schema lacks.
MIN_VERSION = 12
#: The largest command accepted by default: ActiveMQ's ``maxFrameSize`` default is
#: 100 MiB; a broker with a lower ``max_frame_body`` passes that instead.
DEFAULT_MAX_FRAME = 100 * 1024 * 1024
#: The inactivity period the broker asks for, in ms (ActiveMQ's default, 30 s): the
#: negotiated one is the smaller of both peers'.
DEFAULT_MAX_INACTIVITY_MS = 30_000
#: Before a peer's ``WireFormatInfo`` arrives, no command may be bigger than this: a
#: ``WireFormatInfo`` is a few hundred bytes.
MAX_FIRST_FRAME = 64 * 1024

_SIZE = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The wire format both peers agreed on."""

    version: int
    stack_trace: bool
    max_frame_size: int
    #: 0: no inactivity monitoring.
    max_inactivity_ms: int
    max_inactivity_initial_delay_ms: int
    #: What the peer said of itself (ProviderName, ProviderVersion, PlatformDetails...).
    peer_properties: dict[str, Any]
    #: Tight encoding (both peers support it), else loose.
    tight: bool = False


class OpenWireCodec:
    """One side of an OpenWire connection: feed bytes, get commands; send commands."""

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        max_inactivity_ms: int = DEFAULT_MAX_INACTIVITY_MS,
        tight: bool = True,
    ) -> None:
        self.max_frame_size = max_frame_size
        #: Whether this side offers tight encoding.
        self.tight = tight
        self._tight = False
        self.max_inactivity_ms = max_inactivity_ms
        self.negotiated: Negotiated | None = None
        self._buffer = bytearray()
        self._offset = 0
        self._events: list[Structure] = []
        self._out: list[bytes] = []
        self._stack_trace = False

    # ----------------------------------------------------------------- our side

    def wire_format_info(self) -> Structure:
        """What this side supports: send it first."""
        properties: dict[str, Any] = {
            "StackTraceEnabled": False,
            "CacheEnabled": False,
            "CacheSize": Typed(Typed.INT, 0),
            "TcpNoDelayEnabled": True,
            "SizePrefixDisabled": False,
            "TightEncodingEnabled": self.tight,
            "MaxFrameSize": self.max_frame_size,
            "MaxInactivityDuration": self.max_inactivity_ms,
            "MaxInactivityDurationInitalDelay": 10_000,
        }
        return Structure(
            Type.WIREFORMAT_INFO,
            magic=MAGIC,
            version=VERSION,
            marshalled_properties=encode_primitive_map(properties),
        )

    # ----------------------------------------------------------------- receiving

    @property
    def pending_frame_offset(self) -> int | None:
        """Where a part-received command began in the unconsumed input; None if none."""
        return 0 if self._offset < len(self._buffer) else None

    def receive_data(self, data: bytes) -> None:
        """Feed bytes; :class:`OpenWireError` if they are not OpenWire."""
        self._buffer += data
        buffer = self._buffer
        while True:
            available = len(buffer) - self._offset
            if available < 4:
                break
            (size,) = _SIZE.unpack_from(buffer, self._offset)
            limit = self.max_frame_size if self.negotiated is not None else MAX_FIRST_FRAME
            if size <= 0:
                raise OpenWireError(f"invalid command size {size}")
            if size > limit:
                raise OpenWireError(
                    f"command of {size} bytes is over the maximum frame size ({limit})"
                )
            if available < 4 + size:
                break
            start = self._offset + 4
            frame = memoryview(buffer)[start : start + size]
            try:
                if self._tight:
                    command = read_tight_structure(frame, stack_trace=self._stack_trace)
                else:
                    command = read_structure(frame, stack_trace=self._stack_trace)
            finally:
                frame.release()
            self._offset = start + size
            if self.negotiated is None:
                if command.type != Type.WIREFORMAT_INFO:
                    raise OpenWireError("the first command must be a WireFormatInfo")
                self._negotiate(command)
            self._events.append(command)
        if self._offset:
            del buffer[: self._offset]
            self._offset = 0

    def _negotiate(self, info: Structure) -> None:
        if info.magic != MAGIC:
            raise OpenWireError("not an OpenWire client (wrong magic)")
        version = info.version
        if version < MIN_VERSION:
            raise OpenWireError(
                f"OpenWire version {version} is not supported (this broker speaks {VERSION})"
            )
        properties: dict[str, Any] = {}
        if info.marshalled_properties:
            properties = decode_primitive_map(info.marshalled_properties)

        def number(name: str, default: int) -> int:
            value = properties.get(name, default)
            if isinstance(value, Typed):
                value = value.value
            return value if isinstance(value, int) and not isinstance(value, bool) else default

        theirs = number("MaxInactivityDuration", 0)
        ours = self.max_inactivity_ms
        inactivity = min(theirs, ours) if theirs > 0 and ours > 0 else 0
        frame = number("MaxFrameSize", self.max_frame_size)
        self.negotiated = Negotiated(
            version=min(version, VERSION),
            stack_trace=False,
            max_frame_size=min(self.max_frame_size, frame) if frame > 0 else self.max_frame_size,
            max_inactivity_ms=inactivity,
            max_inactivity_initial_delay_ms=number("MaxInactivityDurationInitalDelay", 10_000),
            peer_properties=properties,
            tight=self.tight and properties.get("TightEncodingEnabled") is True,
        )
        self._tight = self.negotiated.tight
        # The broker only accepts, so the frame limit it enforces stays its own.
        self.max_frame_size = min(self.max_frame_size, self.negotiated.max_frame_size)

    def receive_eof(self) -> None:
        """The peer closed; :class:`OpenWireError` if it did so mid-command."""
        if self._offset < len(self._buffer):
            self._buffer.clear()
            raise OpenWireError("the connection closed in the middle of a command")

    def events_received(self) -> list[Structure]:
        events, self._events = self._events, []
        return events

    # ----------------------------------------------------------------- sending

    def send(self, command: Structure) -> int:
        """Queue ``command``; returns how many bytes it takes."""
        if self._tight:
            body = write_tight_structure(command, stack_trace=self._stack_trace)
        else:
            body = write_structure(command, stack_trace=self._stack_trace)
        self._out.append(_SIZE.pack(len(body)))
        self._out.append(body)
        return len(body) + 4

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out
