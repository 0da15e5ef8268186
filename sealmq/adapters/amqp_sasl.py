"""The SASL layer the AMQP session serves in front of Proton's engine (AMQP 1.0 part 5.3).

The PyPI build of Proton has no Cyrus SASL and its server offers neither PLAIN nor
our user store, so the three frames a login takes (sasl-mechanisms, sasl-init,
sasl-outcome) are written and read here, with ``proton.Data`` for their encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from proton import Data, symbol

__all__ = [
    "FRAME",
    "MAX_SASL_FRAME",
    "SASL_AUTH",
    "SASL_FRAME_TYPE",
    "SASL_HEADER",
    "SASL_OK",
    "SASL_SYS_PERM",
    "SaslError",
    "SaslInit",
    "mechanisms_frame",
    "outcome_frame",
    "parse_sasl_init",
]

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
FRAME = struct.Struct(">IBBH")  # size, doff, type, channel
SASL_FRAME_TYPE = 1
#: SASL frames are small (a user name and password); more is not a login.
MAX_SASL_FRAME = 64 * 1024
_SASL_MECHANISMS = 0x40
_SASL_INIT = 0x41
_SASL_OUTCOME = 0x44
SASL_OK, SASL_AUTH, SASL_SYS_PERM = 0, 1, 3


def _sasl_frame(descriptor: int, put: Callable[[Data], None]) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(descriptor)
    data.put_list()
    data.enter()
    put(data)
    data.exit()
    data.exit()
    body = bytes(data.encode())
    return FRAME.pack(FRAME.size + len(body), 2, SASL_FRAME_TYPE, 0) + body


def mechanisms_frame(mechanisms: list[str]) -> bytes:
    def put(data: Data) -> None:
        data.put_array(False, Data.SYMBOL)
        data.enter()
        for name in mechanisms:
            data.put_symbol(symbol(name))
        data.exit()

    return _sasl_frame(_SASL_MECHANISMS, put)


def outcome_frame(code: int) -> bytes:
    return _sasl_frame(_SASL_OUTCOME, lambda data: data.put_ubyte(code))


class SaslError(Exception):
    pass


@dataclass(slots=True)
class SaslInit:
    mechanism: str
    response: bytes


def parse_sasl_init(body: bytes) -> SaslInit:
    data = Data()
    try:
        data.decode(body)
        data.rewind()
        data.next()
        described = data.get_object()
    except Exception:
        raise SaslError("malformed SASL frame") from None
    descriptor = getattr(described, "descriptor", None)
    fields = getattr(described, "value", None)
    if descriptor != _SASL_INIT or not isinstance(fields, list) or not fields:
        raise SaslError("expected sasl-init")
    mechanism = fields[0]
    response = fields[1] if len(fields) > 1 else None
    if not isinstance(mechanism, str):
        raise SaslError("sasl-init names no mechanism")
    if response is None:
        response = b""
    if not isinstance(response, bytes | memoryview):
        raise SaslError("sasl-init's initial response is not binary")
    return SaslInit(str(mechanism), bytes(response))
