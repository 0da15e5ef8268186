"""Sans-IO STOMP 1.0/1.1/1.2 codec: bytes in, frames out, and back.

The driver feeds whatever the transport read to ``receive_data``, takes the
parsed frames and heart-beats from ``events_received``, queues frames with
``send``/``send_message``/``send_heartbeat`` and writes what
``data_to_send`` returns.  Nothing here reads a clock or touches a socket;
heart-beat timing belongs to the driver.

Parsing works over one ``bytearray`` with ``find``, one precompiled regex
search and slicing, and keeps a scan offset between calls, so a peer
dripping one byte at a time costs O(bytes received), never a rescan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .errors import StompError
from .frames import Frame, Heartbeat, new_frame

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECT_FRAME",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "Limits",
    "StompCodec",
]

# Largest frame body accepted, in bytes.  ActiveMQ's STOMP transport refuses
# bodies over ``maxDataLength`` = 104857600 (100 MiB) and Vert.x STOMP uses the
# same default, so clients built against either already stay within it.
DEFAULT_MAX_BODY: Final = 100 * 1024 * 1024

# Largest command + header block, in bytes, from the first octet of the
# command through the blank line.  ActiveMQ and Vert.x cap each header line at
# 10 KiB; real clients send a few hundred bytes (stomp.py's CONNECT is ~100).
# 64 KiB leaves room for long selectors and many JMS properties, while a peer
# that never sends the blank line can pin at most this much memory.
DEFAULT_MAX_HEADER_BYTES: Final = 64 * 1024

# Largest frame a server accepts before the first CONNECT/STOMP frame, in
# bytes, command through NUL.  Clients send a few hundred bytes there (stomp.py
# ~100, a JWT passcode a few KiB); Mosquitto and ActiveMQ bound a connection
# that has not logged in far below their post-login limits too.  Until the
# peer has logged in it may pin no more than this.
DEFAULT_MAX_CONNECT_FRAME: Final = 64 * 1024

# Most header lines in one frame.  ActiveMQ (StompWireFormat MAX_HEADERS) and
# Vert.x (DEFAULT_MAX_HEADERS) both allow 1000; a frame needing more is abuse.
DEFAULT_MAX_HEADERS: Final = 1000

# The longest command, "UNSUBSCRIBE", plus an optional CR.  A longer first
# line cannot be a command, so it is refused before its LF arrives (an HTTP
# request or TLS record sent to the wrong port fails at once).
_MAX_COMMAND_LINE: Final = 12

# Bodies at least this long are queued as their own chunk (the driver uses
# writelines) instead of being copied into one bytes object with the headers.
_COPY_BODY_BELOW: Final = 64 * 1024

_CLIENT_COMMANDS: Final = (
    "CONNECT",
    "STOMP",
    "SEND",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "ACK",
    "NACK",
    "BEGIN",
    "COMMIT",
    "ABORT",
    "DISCONNECT",
)
_SERVER_COMMANDS: Final = ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR")
_ALL_COMMANDS: Final = frozenset(_CLIENT_COMMANDS + _SERVER_COMMANDS)
_CLIENT_BY_BYTES: Final = {c.encode("ascii"): c for c in _CLIENT_COMMANDS}
_SERVER_BY_BYTES: Final = {c.encode("ascii"): c for c in _SERVER_COMMANDS}
_ALL_BY_BYTES: Final = {**_CLIENT_BY_BYTES, **_SERVER_BY_BYTES}

# "All frames except the CONNECT and CONNECTED frames will also escape ..."
# (STOMP 1.2, Value Encoding); STOMP is handled exactly like CONNECT.
_UNESCAPED_COMMANDS: Final = frozenset({"CONNECT", "STOMP", "CONNECTED"})

# Header encodings: 1.0 has no escapes, 1.1 has \n \c \\, 1.2 adds \r.
_RAW: Final = 0
_V11: Final = 1
_V12: Final = 2
_MODES: Final = {"1.0": _RAW, "1.1": _V11, "1.2": _V12}
_UNESCAPES_11: Final = {"n": "\n", "c": ":", "\\": "\\"}
_UNESCAPES_12: Final = {**_UNESCAPES_11, "r": "\r"}

# Parser states.
_IDLE: Final = 0  # between frames: EOLs here are heart-beats
_HEAD: Final = 1  # looking for the blank line that ends the headers
_BODY: Final = 2  # looking for the NUL, or waiting for content-length bytes

_HEARTBEAT: Final = Heartbeat()

# The blank line ending the headers: the EOL of the last line (or of the
# command) followed by an empty line, each EOL an optional CR and a LF.
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may send; exceeding one is a StompError."""

    max_body: int = DEFAULT_MAX_BODY
    """Largest frame body, in bytes."""
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Largest command + header block, in bytes, blank line included."""
    max_headers: int = DEFAULT_MAX_HEADERS
    """Most header lines in one frame."""
    max_connect_frame: int = DEFAULT_MAX_CONNECT_FRAME
    """Largest whole frame a server codec accepts until a CONNECT or STOMP frame
    has been parsed, in bytes (the other limits still apply when smaller)."""

    def __post_init__(self) -> None:
        for name in ("max_body", "max_header_bytes", "max_headers", "max_connect_frame"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, not {value!r}")


class StompCodec:
    """One STOMP connection's framing, in either direction.

    ``server=True`` (the broker side) accepts the client commands; with
    ``server=False`` it accepts CONNECTED, MESSAGE, RECEIPT and ERROR instead.
    ``send`` takes any STOMP command either way.

    ``version`` starts at "1.0" and selects header escaping (and 1.0's
    trimming of padded header values) for every frame but CONNECT, STOMP and
    CONNECTED, which are never escaped.  When the first of those is parsed the
    codec adopts the version it negotiates (the highest of accept-version that
    1.0/1.1/1.2 share, or CONNECTED's version), so frames pipelined behind it
    decode right.  The adapter sets ``version`` to what it agreed; setting it
    by hand also turns that automatic switch off.
    """

    __slots__ = (
        "_accept",
        "_auto_version",
        "_body_start",
        "_buf",
        "_command",
        "_connect_limit",
        "_consumed",
        "_content_length",
        "_eof",
        "_error",
        "_events",
        "_frame_start",
        "_header_end",
        "_headers",
        "_headers_start",
        "_max_body",
        "_max_header_bytes",
        "_max_headers",
        "_mode",
        "_out",
        "_scan",
        "_state",
        "_version",
        "limits",
        "server",
    )

    def __init__(self, limits: Limits = Limits(), *, server: bool = True) -> None:
        self.limits = limits
        self.server = server
        self._max_body = limits.max_body
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        # Until CONNECT: the whole frame within max_connect_frame (0 once past it).
        self._connect_limit = 0
        if server:
            self._connect_limit = limits.max_connect_frame
            self._max_header_bytes = min(limits.max_header_bytes, limits.max_connect_frame)
        # Bytes dropped from the front of _buf so far: where _buf starts in the stream.
        self._consumed = 0
        self._accept = _CLIENT_BY_BYTES if server else _SERVER_BY_BYTES
        self._version = "1.0"
        self._mode = _RAW
        self._auto_version = True
        self._buf = bytearray()
        self._state = _IDLE
        # Offsets into _buf for the frame being parsed; all rebased when the
        # consumed prefix is dropped at the end of receive_data.
        self._frame_start = 0
        self._headers_start = 0
        self._header_end = 0
        self._body_start = 0
        self._scan = 0
        self._command: str | None = None
        self._headers: tuple[tuple[str, str], ...] = ()
        self._content_length = -1
        self._events: list[Frame | Heartbeat] = []
        self._out: list[bytes] = []
        self._error: StompError | None = None
        self._eof = False

    @property
    def version(self) -> str:
        """The STOMP version in use: "1.0", "1.1" or "1.2"."""
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        mode = _MODES.get(value)
        if mode is None:
            raise ValueError(f"unsupported STOMP version {value!r}")
        self._version = value
        self._mode = mode
        self._auto_version = False

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Parse ``data``; then collect the results with ``events_received``.

        Raises StompError when the peer broke the protocol or a limit.  Frames
        parsed before the error stay queued.  The codec is dead afterwards:
        send an ERROR frame carrying ``exc.message`` and close the connection.
        """
        if self._error is not None:
            raise StompError(self._error.message)
        if self._eof:
            raise StompError("data received after end of stream")
        if not data:
            return
        self._buf += data
        try:
            self._parse()
        except StompError as exc:
            self._fail(exc)
            raise

    def receive_eof(self) -> None:
        """Note that the peer closed its side.

        Raises StompError if that cut a frame short (the partial frame is
        dropped either way).
        """
        if self._error is not None:
            raise StompError(self._error.message)
        if self._eof:
            return
        self._eof = True
        if self._state != _IDLE or self._buf:
            exc = StompError("connection closed in the middle of a frame")
            self._fail(exc)
            raise exc

    @property
    def pending_frame_offset(self) -> int | None:
        """Where, in the bytes received so far, the frame still arriving began.

        None when no part of a frame is buffered.  The offset changes when
        another frame starts, so a driver can time how long one frame takes.
        """
        return self._consumed if self._buf else None

    def events_received(self) -> list[Frame | Heartbeat]:
        """Return the frames and heart-beats parsed so far, in order, and forget them."""
        events = self._events
        self._events = []
        return events

    # -- sending -----------------------------------------------------------

    def send(self, frame: Frame) -> None:
        """Queue ``frame`` for ``data_to_send``, escaping headers per ``version``.

        ``content-length`` is always written as ``len(body)``: the frame's own
        value is replaced (later repeats dropped) and one is appended when the
        body is non-empty.  Raises StompError, queueing nothing, for an unknown
        command or a header the version cannot carry (a line break in 1.0 or in
        a CONNECT/CONNECTED frame, a ':' in such a name, a value ending in CR
        before 1.2, an empty name, text that is not UTF-8).
        """
        command = frame.command
        if command not in _ALL_COMMANDS:
            raise StompError(f"cannot send unknown command '{_display(command)}'")
        body = frame.body
        headers: Sequence[tuple[str, str]] = frame.headers
        names = [name for name, _ in headers]
        if "content-length" in names:
            first = names.index("content-length")
            pairs = [
                pair for i, pair in enumerate(headers) if pair[0] != "content-length" or i == first
            ]
            pairs[first] = ("content-length", str(len(body)))
            headers = pairs
        elif body:
            headers = [*headers, ("content-length", str(len(body)))]
        mode = _RAW if command in _UNESCAPED_COMMANDS else self._mode
        self._queue(f"{command}\n{_encode_headers(headers, mode)}\n", body)

    def send_message(self, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        """Queue a MESSAGE frame: the per-delivery fast path, no Frame object.

        ``content-length`` comes first and is always ``len(body)``; any
        ``content-length`` in ``headers`` is ignored.  Raises StompError like
        ``send``.
        """
        if any(name == "content-length" for name, _ in headers):
            headers = [pair for pair in headers if pair[0] != "content-length"]
        block = _encode_headers(headers, self._mode)
        self._queue(f"MESSAGE\ncontent-length:{len(body)}\n{block}\n", body)

    def encode_message_tail(
        self, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[bytes, ...]:
        """Encode the part of a MESSAGE that every subscriber gets alike, without queueing it.

        That is ``content-length`` (always ``len(body)``; any in ``headers`` is
        ignored), ``headers`` escaped for this codec's version, the blank line,
        the body and the NUL. Hand the chunks to ``send_message_with`` of this
        codec or of any codec at the same version, with each subscriber's own
        headers: a message fanned out to many subscribers is encoded once.
        Raises StompError like ``send``.
        """
        block = _encode_headers(headers, self._mode)
        # A substring search over the encoded block rather than a generator over the pairs:
        # the name is never escaped, so any content-length header shows as such a line.
        if block.startswith("content-length:") or "\ncontent-length:" in block:
            headers = [pair for pair in headers if pair[0] != "content-length"]
            block = _encode_headers(headers, self._mode)
        text = f"content-length:{len(body)}\n{block}\n"
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise StompError("header text is not valid UTF-8") from None
        if len(body) < _COPY_BODY_BELOW:
            return (b"".join((raw, body, b"\x00")),)
        return raw, body, b"\x00"

    def encode_header_lines(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """``headers`` as lines escaped for this codec's version: for ``send_message_with``.

        Raises StompError like ``send``.
        """
        try:
            return _encode_headers(headers, self._mode).encode()
        except UnicodeEncodeError:
            raise StompError("header text is not valid UTF-8") from None

    def send_message_with(self, own: bytes, tail: tuple[bytes, ...]) -> None:
        """Queue a MESSAGE: the subscriber's ``own`` header lines, then the shared ``tail``.

        ``own`` comes from ``encode_header_lines`` and ``tail`` from
        ``encode_message_tail``, both of a codec at this version.
        """
        if len(tail) == 1 and len(tail[0]) < _COPY_BODY_BELOW:
            self._out.append(b"".join((b"MESSAGE\n", own, tail[0])))
        else:
            self._out.append(b"MESSAGE\n" + own)
            self._out.extend(tail)

    def send_receipt(self, receipt_id: str) -> None:
        """Queue ``RECEIPT`` for ``receipt_id``: what ``send`` of that frame would queue,
        without a Frame (a durable SEND's answer). Raises StompError like ``send``."""
        if self._mode == _RAW:
            plain = "\n" not in receipt_id and receipt_id[-1:] != "\r"
        else:
            plain = _NEEDS_CARE.search(receipt_id) is None
        if not plain:
            self.send(Frame("RECEIPT", (("receipt-id", receipt_id),)))
            return
        try:
            self._out.append(f"RECEIPT\nreceipt-id:{receipt_id}\n\n\x00".encode())
        except UnicodeEncodeError:
            raise StompError("header text is not valid UTF-8") from None

    def send_heartbeat(self) -> None:
        """Queue one EOL, the STOMP heart-beat."""
        self._out.append(b"\n")

    def data_to_send(self) -> list[bytes]:
        """Return the queued output chunks, in order, and forget them."""
        out = self._out
        self._out = []
        return out

    # -- internals ---------------------------------------------------------

    def _queue(self, head: str, body: bytes) -> None:
        try:
            raw = head.encode("utf-8")
        except UnicodeEncodeError:
            raise StompError("header text is not valid UTF-8") from None
        if len(body) < _COPY_BODY_BELOW:
            self._out.append(b"".join((raw, body, b"\x00")))
        else:
            self._out.extend((raw, body, b"\x00"))

    def _fail(self, exc: StompError) -> None:
        self._error = exc
        self._buf = bytearray()
        self._state = _IDLE

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        events = self._events
        state = self._state
        pos = 0  # in _IDLE the buffer was compacted: unconsumed data starts at 0
        while True:
            if state == _IDLE:
                while pos < n:
                    c = buf[pos]
                    if c == 10:
                        events.append(_HEARTBEAT)
                        pos += 1
                    elif c == 13 and pos + 1 < n and buf[pos + 1] == 10:
                        events.append(_HEARTBEAT)
                        pos += 2
                    else:
                        break
                if pos >= n or (pos + 1 == n and buf[pos] == 13):
                    # Nothing left, or a lone CR that may yet become an EOL.
                    break
                self._frame_start = self._scan = pos
                self._command = None
                state = _HEAD
            if state == _HEAD:
                if not self._find_head_end(buf, n):
                    break
                if self._connect_limit:
                    # What is left of the frame allowance after the headers, NUL excluded.
                    used = self._body_start - self._frame_start + 1
                    self._max_body = max(0, min(self.limits.max_body, self._connect_limit - used))
                self._parse_head(buf)
                state = _BODY
            end = self._find_body_end(buf, n)
            if end < 0:
                break
            pos = end
            state = _IDLE
        self._state = state
        cut = pos if state == _IDLE else self._frame_start
        if cut:
            del buf[:cut]
            self._consumed += cut
            if state != _IDLE:
                self._frame_start -= cut
                self._headers_start -= cut
                self._header_end -= cut
                self._body_start -= cut
                self._scan -= cut

    def _find_head_end(self, buf: bytearray, n: int) -> bool:
        """Check the command line, then look for the blank line; True once found."""
        start = self._frame_start
        limit_end = start + self._max_header_bytes
        if self._command is None:
            i = buf.find(b"\n", self._scan, limit_end)
            if i < 0:
                # A first line longer than any command is refused as soon as
                # its first 13 bytes are in, unless the header limit is even
                # smaller (then that limit is what a byte-wise feed hits first).
                if n - start > _MAX_COMMAND_LINE and self._max_header_bytes > _MAX_COMMAND_LINE:
                    raise StompError(
                        _unknown_command(bytes(buf[start : start + _MAX_COMMAND_LINE]))
                    )
                if n >= limit_end:
                    raise StompError(f"frame headers exceed {self._max_header_bytes} bytes")
                self._scan = n
                return False
            end = i - 1 if i > start and buf[i - 1] == 13 else i
            self._command = self._command_for(bytes(buf[start:end]))
            self._headers_start = i + 1
            self._scan = i  # this LF may already open the blank line
        match = _BLANK_LINE.search(buf, self._scan, limit_end)
        if match is None:
            if n >= limit_end:
                raise StompError(f"frame headers exceed {self._max_header_bytes} bytes")
            # A match may begin in the last two bytes; nothing before is rescanned.
            self._scan = max(self._scan, n - 2)
            return False
        self._header_end = match.start() + 1
        self._body_start = self._scan = match.end()
        return True

    def _too_big(self) -> str:
        """The error for a body over the limit in force."""
        if self._connect_limit and self._max_body < self.limits.max_body:
            return f"frame exceeds {self._connect_limit} bytes, the limit before CONNECT"
        return f"frame body exceeds {self._max_body} bytes"

    def _command_for(self, raw: bytes) -> str:
        command = self._accept.get(raw)
        if command is not None:
            return command
        if raw in _ALL_BY_BYTES:
            side = "client" if self.server else "server"
            raise StompError(f"command '{_ALL_BY_BYTES[raw]}' is not allowed from a {side}")
        raise StompError(_unknown_command(raw))

    def _parse_head(self, buf: bytearray) -> None:
        command = self._command
        assert command is not None
        start, end = self._headers_start, self._header_end
        if end <= start:
            self._headers = ()
            self._content_length = -1
            return
        try:
            text = buf[start : end - 1].decode("utf-8")
        except UnicodeDecodeError:
            raise StompError("frame headers are not valid UTF-8") from None
        lines = text.split("\n")
        if len(lines) > self._max_headers:
            raise StompError(f"frame has more than {self._max_headers} headers")
        if "\r" in text:
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        # Whole-list passes (comprehensions, list membership) rather than one
        # Python-level loop with branches per header: this is the hot path.
        parts = [line.partition(":") for line in lines]
        pairs = [(name, value) for name, colon, value in parts if colon]
        if len(pairs) != len(parts):
            raise StompError("header line without ':'")
        if command in _UNESCAPED_COMMANDS:
            mode = _RAW
            trim = self._mode == _RAW and not _declares_newer_version(lines)
        else:
            mode = self._mode
            trim = mode == _RAW
        if mode:
            if "\\" in text:
                table = _UNESCAPES_12 if mode == _V12 else _UNESCAPES_11
                pairs = [
                    (
                        _unescape(name, table) if "\\" in name else name,
                        _unescape(value, table) if "\\" in value else value,
                    )
                    for name, value in pairs
                ]
        elif trim:
            # STOMP 1.0 examples pad values ("ack: client") and 1.0 servers
            # trimmed them; from 1.1 on padding is data.
            pairs = [(name.strip(" \t"), value.strip(" \t")) for name, value in pairs]
        names = [name for name, _ in pairs]
        if "" in names:
            raise StompError("header with an empty name")
        content_length = -1
        if "content-length" in names:
            value = pairs[names.index("content-length")][1]
            content_length = _parse_content_length(value, self._max_body)
            if content_length > self._max_body:
                raise StompError(self._too_big())
        self._headers = tuple(pairs)
        self._content_length = content_length

    def _find_body_end(self, buf: bytearray, n: int) -> int:
        """Emit the frame once its body and NUL are in; return the offset after the NUL, or -1."""
        start = self._body_start
        length = self._content_length
        if length >= 0:
            end = start + length
            if n <= end:
                return -1
            if buf[end] != 0:
                raise StompError("frame body is not followed by NUL (content-length too small?)")
        else:
            # The NUL may sit right after a body of exactly max_body bytes.
            limit = start + self._max_body + 1
            end = buf.find(b"\x00", self._scan, limit)
            if end < 0:
                if n >= limit:
                    raise StompError(self._too_big())
                self._scan = n
                return -1
        command = self._command
        assert command is not None
        frame = new_frame(command, self._headers, _take(buf, start, end))
        self._events.append(frame)
        if self._connect_limit and command in _UNESCAPED_COMMANDS:
            # Past CONNECT: the adapter holds later frames until the login is settled.
            self._connect_limit = 0
            self._max_header_bytes = self.limits.max_header_bytes
            self._max_body = self.limits.max_body
        if self._auto_version and command in _UNESCAPED_COMMANDS:
            self._adopt_version(frame)
        return end + 1

    def _adopt_version(self, frame: Frame) -> None:
        """Switch to the version this CONNECT/CONNECTED settles on, before the next frame.

        Clients may pipeline frames right behind CONNECT; they must be decoded
        with the negotiated version's escaping before the adapter gets a chance
        to set ``version``.  The highest version both sides know wins (STOMP
        1.2, Protocol Negotiation); no accept-version/version header means 1.0.
        """
        self._auto_version = False
        if frame.command == "CONNECTED":
            offered = [(frame.get("version") or "1.0").strip()]
        else:
            accept = frame.get("accept-version")
            offered = ["1.0"] if accept is None else [v.strip() for v in accept.split(",")]
        common = [v for v in offered if v in _MODES]
        if common:
            self._version = max(common)
            self._mode = _MODES[self._version]


def _take(buf: bytearray, start: int, end: int) -> bytes:
    """Copy buf[start:end] out as bytes, copying large bodies only once."""
    if end - start < _COPY_BODY_BELOW:
        return bytes(buf[start:end])
    with memoryview(buf) as view, view[start:end] as part:
        return part.tobytes()


def _declares_newer_version(lines: list[str]) -> bool:
    """True if a CONNECT/CONNECTED frame offers or names a version above 1.0.

    Such a peer does not pad headers, so its CONNECT must not be trimmed even
    though the session is still at 1.0 while it is parsed.  A CONNECT without
    ``accept-version`` comes from a 1.0-only client (STOMP 1.2, Protocol
    Negotiation).
    """
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("accept-version", "version"):
            return value.strip(" \t\r") not in ("", "1.0")
    return False


def _unescape(text: str, table: dict[str, str]) -> str:
    if "\\\\" not in text:
        # No escaped backslash: every backslash opens an escape, and undoing the common
        # ones cannot make another. One left over is an undefined one (the loop says which).
        quick = text.replace("\\c", ":").replace("\\n", "\n")
        if "r" in table:
            quick = quick.replace("\\r", "\r")
        if "\\" not in quick:
            return quick
    out: list[str] = []
    pos = 0
    while True:
        i = text.find("\\", pos)
        if i < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:i])
        replacement = table.get(text[i + 1 : i + 2])
        if replacement is None:
            # "Undefined escape sequences ... MUST be treated as a fatal
            # protocol error" (STOMP 1.1 and 1.2, Value Encoding).
            seq = _display(text[i : i + 2])
            raise StompError(f"undefined escape sequence '{seq}' in header")
        out.append(replacement)
        pos = i + 2


def _parse_content_length(value: str, max_body: int) -> int:
    """The declared length; one more than ``max_body`` for any larger number."""
    # isdigit() alone admits other scripts' digits; int() would also take
    # spaces, '+' and '_', and refuses strings of over 4300 digits.
    if value.isdigit() and value.isascii():
        if len(value) <= 18:
            length = int(value)
        else:
            digits = value.lstrip("0")
            length = int(digits) if len(digits) <= 18 else max_body + 1
        return min(length, max_body + 1)
    if value[:1] == "-" and value[1:].isdigit() and value[1:].isascii():
        raise StompError("content-length is negative")
    raise StompError("content-length is not a number")


def _encode_headers(headers: Sequence[tuple[str, str]], mode: int) -> str:
    """Return the header lines, each ending in LF, escaped for ``mode``."""
    block = "".join([f"{name}:{value}\n" for name, value in headers])
    # Usually nothing needs escaping or refusing: prove that with a few scans
    # of the whole block (one ':' and one LF per header, no CR or backslash,
    # no line starting with ':') instead of testing every name and value.
    count = len(headers)
    if block.count("\n") == count and "\\" not in block and "\r" not in block:
        colons = block.count(":")
        if colons == count and "\n:" not in block and block[:1] != ":":
            return block
        if colons > count and mode != _RAW:
            # The other usual case from 1.1 on: ':' in values only (ActiveMQ-style
            # message ids, ack ids, times). Escaped, the values hold no ':', so one
            # per line proves that no name held one either.
            block = "".join(
                [
                    f"{name}:{value.replace(':', _ESCAPED_COLON)}\n"
                    if ":" in value
                    else f"{name}:{value}\n"
                    for name, value in headers
                ]
            )
            if block.count(":") == count and "\n:" not in block and block[:1] != ":":
                return block
    return "".join([_encode_header(name, value, mode) + "\n" for name, value in headers])


_ESCAPED_COLON: Final = "\\c"
# What a header value may need escaped from STOMP 1.1 on.
_NEEDS_CARE: Final = re.compile(r"[\\:\r\n]")


def _encode_header(name: str, value: str, mode: int) -> str:
    """Return ``name:value`` escaped for ``mode``; StompError if it cannot be carried."""
    if not name:
        raise StompError("cannot send a header with an empty name")
    if mode == _RAW:
        # No escapes: a line break would end the header (and could forge
        # further headers), a ':' would end the name.
        if "\n" in name or ":" in name or "\n" in value or value[-1:] == "\r":
            raise StompError(
                f"header '{_display(name, 32)}' cannot be sent unescaped (line break or ':')"
            )
        return f"{name}:{value}"
    if "\\" in name or ":" in name or "\n" in name or "\r" in name:
        name = _escape(name, mode)
    if "\\" in value or ":" in value or "\n" in value or "\r" in value:
        if mode == _V11 and value[-1:] == "\r":
            # 1.1 has no \r escape and a trailing CR reads as part of the EOL.
            raise StompError(f"header '{_display(name, 32)}' cannot end in CR before STOMP 1.2")
        value = _escape(value, mode)
    return f"{name}:{value}"


def _escape(text: str, mode: int) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")
    if mode == _V12:
        text = text.replace("\r", "\\r")
    return text


def _display(text: str | bytes, limit: int = _MAX_COMMAND_LINE) -> str:
    """Peer text made safe to quote in an error: truncated, printable ASCII only."""
    if isinstance(text, bytes):
        text = text[:limit].decode("ascii", "replace")
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _unknown_command(raw: bytes) -> str:
    return f"unknown command '{_display(raw)}'"
