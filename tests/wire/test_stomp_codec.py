"""The STOMP codec: golden client bytes, round trips, split feeds, garbage, limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
import stomp.utils  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmq.wire.stomp import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    Frame,
    Heartbeat,
    Limits,
    StompCodec,
    StompError,
)

Event = Frame | Heartbeat
Outcome = tuple[list[Event], str | None]

CLIENT_COMMANDS = (
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
SERVER_COMMANDS = ("CONNECTED", "MESSAGE", "RECEIPT", "ERROR")
RAW_COMMANDS = ("CONNECT", "STOMP", "CONNECTED")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(
    data: bytes,
    pieces: Iterable[int] | None = None,
    *,
    server: bool = True,
    version: str | None = None,
    limits: Limits | None = None,
) -> Outcome:
    """Feed ``data`` in pieces of the given sizes (whole if None); return events and error.

    With ``version`` None the codec starts at 1.0 and follows CONNECT/CONNECTED.
    """
    codec = StompCodec(limits or Limits(), server=server)
    if version is not None:
        codec.version = version
    events: list[Event] = []
    chunks = [data] if pieces is None else list(_split(data, pieces))
    try:
        for chunk in chunks:
            codec.receive_data(chunk)
            events += codec.events_received()
        codec.receive_eof()
    except StompError as exc:
        events += codec.events_received()
        return events, exc.message
    return events, None


def _split(data: bytes, sizes: Iterable[int]) -> Iterable[bytes]:
    pos = 0
    for size in sizes:
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


def one_by_one(data: bytes) -> list[int]:
    return [1] * len(data)


def parse_one(
    data: bytes, *, server: bool = True, version: str | None = None, limits: Limits | None = None
) -> Frame:
    """Parse a stream holding exactly one frame (heart-beats aside)."""
    events, error = feed(data, server=server, version=version, limits=limits)
    assert error is None
    frames = [e for e in events if isinstance(e, Frame)]
    assert len(frames) == 1
    return frames[0]


def error_of(
    data: bytes, *, server: bool = True, version: str | None = None, limits: Limits | None = None
) -> str:
    """Return the StompError message, checking the byte-wise feed agrees."""
    _, error = feed(data, server=server, version=version, limits=limits)
    _, bytewise = feed(data, one_by_one(data), server=server, version=version, limits=limits)
    assert error is not None
    assert error == bytewise
    return error


def encode(frames: Sequence[Frame | Heartbeat], version: str, *, server: bool = False) -> bytes:
    codec = StompCodec(server=server)
    codec.version = version
    for item in frames:
        if isinstance(item, Heartbeat):
            codec.send_heartbeat()
        else:
            codec.send(item)
    return b"".join(codec.data_to_send())


def with_length(frame: Frame) -> Frame:
    """What ``send`` puts on the wire for a frame without content-length."""
    if not frame.body:
        return frame
    return Frame(
        frame.command, (*frame.headers, ("content-length", str(len(frame.body)))), frame.body
    )


# --- API -------------------------------------------------------------------


def test_frame_get_and_header_dict_take_the_first_occurrence() -> None:
    frame = Frame("MESSAGE", (("foo", "World"), ("bar", "1"), ("foo", "Hello")))
    assert frame.get("foo") == "World"
    assert frame.get("missing") is None
    assert frame.get("missing", "x") == "x"
    assert frame.header_dict() == {"foo": "World", "bar": "1"}
    assert list(frame.header_dict()) == ["foo", "bar"]


def test_frame_repr_hides_the_passcode_and_caps_the_body() -> None:
    frame = Frame("CONNECT", (("login", "u"), ("passcode", "s3cret")), b"x" * 1000)
    text = repr(frame)
    assert "s3cret" not in text
    assert "1000 bytes" in text
    assert len(text) < 300


def test_default_limits_are_the_named_constants() -> None:
    limits = Limits()
    assert limits.max_body == DEFAULT_MAX_BODY == 104857600
    assert limits.max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 65536
    assert limits.max_headers == DEFAULT_MAX_HEADERS == 1000


@pytest.mark.parametrize("field", ["max_body", "max_header_bytes", "max_headers"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


def test_version_rejects_unknown_values() -> None:
    codec = StompCodec()
    assert codec.version == "1.0"
    codec.version = "1.2"
    assert codec.version == "1.2"
    with pytest.raises(ValueError):
        codec.version = "2.0"


def test_events_and_output_are_drained() -> None:
    codec = StompCodec()
    codec.receive_data(b"\nDISCONNECT\n\n\x00")
    assert codec.events_received() == [Heartbeat(), Frame("DISCONNECT", ())]
    assert codec.events_received() == []
    codec.send_heartbeat()
    codec.send(Frame("RECEIPT", (("receipt-id", "1"),)))
    assert codec.data_to_send() == [b"\n", b"RECEIPT\nreceipt-id:1\n\n\x00"]
    assert codec.data_to_send() == []


def test_the_codec_is_dead_after_an_error_but_can_still_send() -> None:
    codec = StompCodec()
    with pytest.raises(StompError) as first:
        codec.receive_data(b"FOO\n\n\x00")
    assert first.value.message == "unknown command 'FOO'"
    with pytest.raises(StompError) as again:
        codec.receive_data(b"SEND\n\n\x00")
    assert again.value.message == first.value.message
    with pytest.raises(StompError):
        codec.receive_eof()
    assert codec.events_received() == []
    codec.send(Frame("ERROR", (("message", first.value.message),)))
    assert codec.data_to_send() == [b"ERROR\nmessage:unknown command 'FOO'\n\n\x00"]


def test_frames_before_an_error_stay_queued() -> None:
    codec = StompCodec()
    with pytest.raises(StompError):
        codec.receive_data(b"SEND\ndestination:/q\n\nhi\x00BOGUS\n")
    assert codec.events_received() == [Frame("SEND", (("destination", "/q"),), b"hi")]


def test_eof_between_frames_is_clean_and_mid_frame_is_an_error() -> None:
    codec = StompCodec()
    codec.receive_data(b"DISCONNECT\n\n\x00\n")
    codec.receive_eof()
    assert len(codec.events_received()) == 2
    codec.receive_eof()  # idempotent
    with pytest.raises(StompError, match="after end of stream"):
        codec.receive_data(b"\n")

    for partial in (b"SEND", b"SEND\n\n", b"SEND\ncontent-length:3\n\nab", b"\r"):
        codec = StompCodec()
        codec.receive_data(partial)
        with pytest.raises(StompError, match="middle of a frame"):
            codec.receive_eof()


def test_str_of_the_error_is_its_message() -> None:
    error = StompError("frame body exceeds 10 bytes")
    assert str(error) == error.message == "frame body exceeds 10 bytes"


# --- golden bytes: what stomp.py sends (Protocol12; headers sorted by name) -----

STOMPPY_STOMP = (
    b"STOMP\naccept-version:1.2\nheart-beat:10000,10000\nhost:localhost\n"
    b"login:admin\npasscode:s3cret\n\n\x00"
)
STOMPPY_CONNECT = STOMPPY_STOMP.replace(b"STOMP", b"CONNECT", 1)
STOMPPY_SUBSCRIBE = b"SUBSCRIBE\nack:client-individual\ndestination:/queue/orders\nid:1\n\n\x00"
STOMPPY_SEND = (
    b"SEND\ncontent-length:13\ncontent-type:text/plain\ndestination:/queue/orders\n"
    b"priority:4\n\nh\xc3\xa9llo w\xc3\xb6rld\x00"
)
STOMPPY_ACK = b"ACK\nid:ID\\chost-1\\c1\\c1\\c1\nreceipt:r-1\n\n\x00"
STOMPPY_DISCONNECT = b"DISCONNECT\nreceipt:bye\n\n\x00"

CONNECT_HEADERS = (
    ("accept-version", "1.2"),
    ("heart-beat", "10000,10000"),
    ("host", "localhost"),
    ("login", "admin"),
    ("passcode", "s3cret"),
)


@pytest.mark.parametrize(
    ("wire", "command"), [(STOMPPY_STOMP, "STOMP"), (STOMPPY_CONNECT, "CONNECT")]
)
def test_golden_stomppy_connect(wire: bytes, command: str) -> None:
    # The session is still at 1.0 while CONNECT is parsed; its padding-free
    # 1.2 headers must come through untouched.
    frame = parse_one(wire)
    assert frame == Frame(command, CONNECT_HEADERS)
    assert frame.get("heart-beat") == "10000,10000"


def test_golden_stomppy_session() -> None:
    codec = StompCodec()
    codec.receive_data(STOMPPY_STOMP)
    assert [e.command for e in codec.events_received() if isinstance(e, Frame)] == ["STOMP"]
    codec.version = "1.2"  # what the adapter does after sending CONNECTED
    codec.receive_data(STOMPPY_SUBSCRIBE + STOMPPY_SEND + STOMPPY_ACK + STOMPPY_DISCONNECT)
    assert codec.events_received() == [
        Frame(
            "SUBSCRIBE",
            (("ack", "client-individual"), ("destination", "/queue/orders"), ("id", "1")),
        ),
        Frame(
            "SEND",
            (
                ("content-length", "13"),
                ("content-type", "text/plain"),
                ("destination", "/queue/orders"),
                ("priority", "4"),
            ),
            "héllo wörld".encode(),
        ),
        Frame("ACK", (("id", "ID:host-1:1:1:1"), ("receipt", "r-1"))),
        Frame("DISCONNECT", (("receipt", "bye"),)),
    ]


def test_golden_output_is_read_back_by_stomppy() -> None:
    codec = StompCodec()
    codec.version = "1.2"
    headers = [
        ("destination", "/queue/orders"),
        ("message-id", "ID:host-1:1:1:1"),
        ("subscription", "1"),
        ("note", "a\\b\r\nc"),
        ("content-length", "999"),  # ignored: send_message writes its own
    ]
    codec.send_message(headers, b"he\x00llo")
    (wire,) = codec.data_to_send()
    assert wire == (
        b"MESSAGE\ncontent-length:6\ndestination:/queue/orders\n"
        b"message-id:ID\\chost-1\\c1\\c1\\c1\nsubscription:1\nnote:a\\\\b\\r\\nc\n\n"
        b"he\x00llo\x00"
    )
    parsed = stomp.utils.parse_frame(wire[:-1])
    assert parsed.cmd == "MESSAGE"
    assert parsed.headers["message-id"] == "ID:host-1:1:1:1"
    assert parsed.headers["note"] == "a\\b\r\nc"
    assert parsed.body == b"he\x00llo"


def test_golden_connected_is_never_escaped() -> None:
    codec = StompCodec()
    codec.version = "1.2"
    codec.send(Frame("CONNECTED", (("version", "1.2"), ("server", "sealmq/0.1"))))
    assert codec.data_to_send() == [b"CONNECTED\nversion:1.2\nserver:sealmq/0.1\n\n\x00"]


# --- round trips (hypothesis) ----------------------------------------------

# Text rich in the characters STOMP has to escape.
SPECIAL = st.sampled_from([":", "\n", "\r", "\\", "c", "n", "r", " ", "\t", "\x00", "é", "😀"])
TEXT = st.text(alphabet=st.one_of(SPECIAL, st.characters(codec="utf-8")), max_size=16)
NAMES = TEXT.filter(lambda s: s != "" and s != "content-length")
HEADERS = st.lists(st.tuples(NAMES, TEXT), max_size=6).map(tuple)
BODIES = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00", b"a\x00b\x00"]))
ESCAPED_COMMANDS = st.sampled_from(
    [c for c in CLIENT_COMMANDS + SERVER_COMMANDS if c not in RAW_COMMANDS]
)


def roundtrip(frame: Frame, version: str) -> Frame:
    wire = encode([frame], version)
    return parse_one(wire, server=frame.command in CLIENT_COMMANDS, version=version)


@FAST
@given(
    version=st.sampled_from(["1.1", "1.2"]),
    command=ESCAPED_COMMANDS,
    headers=HEADERS,
    body=BODIES,
)
def test_roundtrip_escaped_frames(
    version: str, command: str, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    frame = Frame(command, headers, body)
    if version == "1.1" and any(value.endswith("\r") for _, value in headers):
        # 1.1 has no \r escape, and a trailing CR would read as part of the EOL.
        with pytest.raises(StompError, match="cannot end in CR"):
            encode([frame], version)
        return
    assert roundtrip(frame, version) == with_length(frame)


RAW_TEXT = TEXT.filter(lambda s: "\n" not in s and not s.endswith("\r"))
RAW_NAMES = NAMES.filter(lambda s: "\n" not in s and ":" not in s)


@FAST
@given(
    version=st.sampled_from(["1.1", "1.2"]),
    command=st.sampled_from(RAW_COMMANDS),
    headers=st.lists(st.tuples(RAW_NAMES, RAW_TEXT), max_size=6).map(tuple),
)
def test_roundtrip_connect_frames_unescaped(
    version: str, command: str, headers: tuple[tuple[str, str], ...]
) -> None:
    frame = Frame(command, headers)
    wire = encode([frame], version)
    assert b"\\" not in wire or any("\\" in n + v for n, v in headers)
    assert roundtrip(frame, version) == frame


PLAIN_10 = RAW_TEXT.filter(lambda s: s == s.strip(" \t"))


@FAST
@given(
    command=ESCAPED_COMMANDS,
    headers=st.lists(st.tuples(RAW_NAMES.filter(lambda s: s == s.strip(" \t")), PLAIN_10)),
    body=BODIES,
)
def test_roundtrip_stomp_10(command: str, headers: list[tuple[str, str]], body: bytes) -> None:
    frame = Frame(command, tuple(headers), body)
    assert roundtrip(frame, "1.0") == with_length(frame)


def stream_items(commands: Sequence[str]) -> st.SearchStrategy[tuple[Frame | Heartbeat, bool]]:
    frames = st.builds(
        Frame, st.sampled_from([c for c in commands if c not in RAW_COMMANDS]), HEADERS, BODIES
    )
    return st.tuples(st.one_of(st.just(Heartbeat()), frames), st.booleans())


@FAST
@given(
    version=st.sampled_from(["1.1", "1.2"]),
    server=st.booleans(),
    data=st.data(),
    sizes=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_split_feeds_yield_the_same_events(
    version: str, server: bool, data: st.DataObject, sizes: list[int]
) -> None:
    commands = CLIENT_COMMANDS if server else SERVER_COMMANDS
    items = data.draw(st.lists(stream_items(commands), max_size=6))
    wire = b""
    expected: list[Event] = []
    for item, crlf in items:
        if isinstance(item, Heartbeat):
            wire += b"\r\n" if crlf else b"\n"
            expected.append(item)
        elif not (version == "1.1" and any(v.endswith("\r") for _, v in item.headers)):
            wire += encode([item], version)
            expected.append(with_length(item))
    whole = feed(wire, server=server, version=version)
    assert whole == (expected, None)
    assert feed(wire, one_by_one(wire), server=server, version=version) == whole
    assert feed(wire, sizes, server=server, version=version) == whole


# --- garbage in: events or StompError, never anything else -----------------

PIECES = st.sampled_from(
    [
        b"SEND",
        b"MESSAGE",
        b"CONNECT",
        b"ACK",
        b"\n",
        b"\r\n",
        b"\r",
        b":",
        b"\\",
        b"\\c",
        b"\\t",
        b"\x00",
        b"content-length:",
        b"content-length: 3",
        b"3",
        b"-1",
        b"99999999999999999999999",
        b"a",
        b"\xff",
        b"\xc3",
        b"\xa9",
        b" ",
    ]
)
STOMPISH = st.lists(PIECES, max_size=40).map(b"".join)
VALID_FRAMES = [
    STOMPPY_CONNECT,
    STOMPPY_SUBSCRIBE,
    STOMPPY_SEND,
    STOMPPY_ACK,
    b"SEND\r\ndestination:/q\r\nh:a\\c\\n\\\\\\r\r\n\r\nbody\x00\r\n",
    b"MESSAGE\ncontent-length:3\nmessage-id:1\n\na\x00b\x00\n\n",
    b"ERROR\nmessage: bad\n\n\x00",
    b"\n",
]


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid frames with a few bytes inserted, deleted or replaced: deep garbage."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(VALID_FRAMES), max_size=4))))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(PIECES)
        if action == "insert":
            data[pos:pos] = piece
        elif action == "delete":
            del data[pos : pos + len(piece)]
        else:
            data[pos : pos + len(piece)] = piece
    return bytes(data)


SMALL_LIMITS = st.builds(
    Limits,
    max_body=st.integers(min_value=1, max_value=32),
    max_header_bytes=st.integers(min_value=1, max_value=160),
    max_headers=st.integers(min_value=1, max_value=6),
)


@settings(max_examples=500, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=200), STOMPISH, mutated_streams()),
    version=st.sampled_from([None, "1.0", "1.1", "1.2"]),
    server=st.booleans(),
    limits=st.one_of(st.just(Limits()), SMALL_LIMITS),
    sizes=st.lists(st.integers(min_value=1, max_value=16), max_size=20),
)
def test_garbage_gives_events_or_stomp_error_the_same_whichever_way_it_is_split(
    data: bytes, version: str | None, server: bool, limits: Limits, sizes: list[int]
) -> None:
    whole = feed(data, server=server, version=version, limits=limits)
    assert feed(data, one_by_one(data), server=server, version=version, limits=limits) == whole
    assert feed(data, sizes, server=server, version=version, limits=limits) == whole
    events, error = whole
    assert all(isinstance(e, Frame | Heartbeat) for e in events)
    if error is not None:
        assert 0 < len(error) < 100
        assert error.isprintable() and error.isascii()


def test_scan_offset_advances_so_a_byte_drip_is_linear() -> None:
    codec = StompCodec()
    codec.receive_data(b"SEND\ndestination:/q\n\n")
    for _ in range(1000):
        before = codec._scan
        codec.receive_data(b"x")
        # Each byte moves the scan on by one: nothing is searched twice.
        assert codec._scan == before + 1
    codec.receive_data(b"\x00")
    (frame,) = codec.events_received()
    assert isinstance(frame, Frame)
    assert frame.body == b"x" * 1000

    codec = StompCodec()
    codec.receive_data(b"SEND\n")
    fed = 5
    for _ in range(200):
        for byte in b"h:v\n":
            before = codec._scan
            codec.receive_data(bytes([byte]))
            fed += 1
            # The blank-line search resumes at most two bytes back.
            assert before <= codec._scan and codec._scan >= fed - 2
    codec.receive_data(b"\n\x00")
    (frame,) = codec.events_received()
    assert isinstance(frame, Frame)
    assert len(frame.headers) == 200


# --- limits ----------------------------------------------------------------


def test_announced_oversize_body_fails_before_the_bytes_arrive() -> None:
    codec = StompCodec(Limits(max_body=10))
    with pytest.raises(StompError) as exc:
        codec.receive_data(b"SEND\ncontent-length:11\n\n")
    assert exc.value.message == "frame body exceeds 10 bytes"
    # Past CONNECT, where the frame limit before login no longer applies.
    assert error_of(b"CONNECT\n\n\x00SEND\ncontent-length:" + b"9" * 5000 + b"\n\n") == (
        f"frame body exceeds {DEFAULT_MAX_BODY} bytes"
    )


def test_body_of_exactly_max_body_is_accepted() -> None:
    limits = Limits(max_body=4)
    assert parse_one(b"SEND\n\nabcd\x00", limits=limits).body == b"abcd"
    assert parse_one(b"SEND\ncontent-length:4\n\nab\x00d\x00", limits=limits).body == b"ab\x00d"


def test_unterminated_body_over_max_body_fails() -> None:
    limits = Limits(max_body=4)
    assert error_of(b"SEND\n\nabcde", limits=limits) == "frame body exceeds 4 bytes"
    # Even when the NUL is already in the buffer, further on.
    assert error_of(b"SEND\n\nabcdefgh\x00", limits=limits) == "frame body exceeds 4 bytes"


def test_header_block_over_max_header_bytes_fails_as_soon_as_known() -> None:
    limits = Limits(max_header_bytes=32)
    frame = b"SEND\ndestination:/queue/abcdef\n\n\x00"
    assert len(frame) - 1 == 32  # command + headers + blank line
    assert parse_one(frame, limits=limits).get("destination") == "/queue/abcdef"
    codec = StompCodec(limits)
    codec.receive_data(b"SEND\n" + b"x" * 26)
    with pytest.raises(StompError) as exc:
        codec.receive_data(b"x")  # 32 bytes and still no end of headers
    assert exc.value.message == "frame headers exceed 32 bytes"
    long_frame = b"SEND\ndestination:/queue/abcdefg\n\n\x00"
    assert error_of(long_frame, limits=limits) == "frame headers exceed 32 bytes"


def test_too_many_headers() -> None:
    limits = Limits(max_headers=3)
    assert len(parse_one(b"SEND\na:1\nb:2\nc:3\n\n\x00", limits=limits).headers) == 3
    error = error_of(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\x00", limits=limits)
    assert error == "frame has more than 3 headers"


# --- malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"FOO\n\n\x00", "unknown command 'FOO'"),
        (b"send\n\n\x00", "unknown command 'send'"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "unknown command 'GET / HTTP/1'"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb", "unknown command '????????????'"),
        (b"MESSAGE\n\n\x00", "command 'MESSAGE' is not allowed from a client"),
        (b"SEND\ndestination\n\n\x00", "header line without ':'"),
        (b"SEND\n:value\n\n\x00", "header with an empty name"),
        (b"SEND\ncontent-length:abc\n\n\x00", "content-length is not a number"),
        (b"SEND\ncontent-length:\n\n\x00", "content-length is not a number"),
        (b"SEND\ncontent-length:+3\n\nabc\x00", "content-length is not a number"),
        (b"SEND\ncontent-length:\xd9\xa3\n\nabc\x00", "content-length is not a number"),
        (b"SEND\ncontent-length:-1\n\n\x00", "content-length is negative"),
        (b"SEND\ncontent-length:2\n\nabc\x00", "frame body is not followed by NUL"),
        (b"SEND\nh:\xff\n\n\x00", "frame headers are not valid UTF-8"),
        (b"SEND\nh:\xc3\n\n\x00", "frame headers are not valid UTF-8"),
    ],
)
def test_malformed_frames(wire: bytes, message: str) -> None:
    assert error_of(wire).startswith(message)


def test_client_side_refuses_client_commands() -> None:
    assert error_of(b"SEND\n\n\x00", server=False) == "command 'SEND' is not allowed from a server"
    frame = parse_one(b"MESSAGE\ndestination:/q\n\n\x00", server=False)
    assert frame.command == "MESSAGE"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("escape", [b"\\t", b"\\x", b"\\", b"\\ "])
def test_undefined_escape_is_fatal(version: str, escape: bytes) -> None:
    message = error_of(b"SEND\nh:a" + escape + b"\n\n\x00", version=version)
    assert message.startswith("undefined escape sequence")


def test_backslash_r_is_undefined_in_11_and_defined_in_12() -> None:
    wire = b"SEND\nh:a\\rb\n\n\x00"
    assert error_of(wire, version="1.1") == "undefined escape sequence '\\r' in header"
    assert parse_one(wire, version="1.2").get("h") == "a\rb"


def test_error_messages_never_echo_unprintable_or_long_peer_text() -> None:
    message = error_of(b"\x1b[31m" + b"A" * 500 + b"\n\n\x00")
    assert message == "unknown command '?[31mAAAAAAA'"


# --- sending ---------------------------------------------------------------


def test_send_replaces_content_length_and_drops_repeats() -> None:
    codec = StompCodec()
    codec.send(
        Frame(
            "SEND",
            (("content-length", "1"), ("destination", "/q"), ("content-length", "7")),
            b"abc",
        )
    )
    assert codec.data_to_send() == [b"SEND\ncontent-length:3\ndestination:/q\n\nabc\x00"]


def test_send_adds_content_length_only_for_a_body() -> None:
    codec = StompCodec()
    codec.send(Frame("SEND", (("destination", "/q"),)))
    codec.send(Frame("SEND", (("destination", "/q"),), b"\x00"))
    assert codec.data_to_send() == [
        b"SEND\ndestination:/q\n\n\x00",
        b"SEND\ndestination:/q\ncontent-length:1\n\n\x00\x00",
    ]


def test_send_message_always_has_content_length() -> None:
    codec = StompCodec()
    codec.send_message([("destination", "/q")], b"")
    assert codec.data_to_send() == [b"MESSAGE\ncontent-length:0\ndestination:/q\n\n\x00"]


def test_large_bodies_are_queued_without_copying() -> None:
    codec = StompCodec()
    body = b"x" * (1 << 20)
    codec.send_message([("destination", "/q")], body)
    chunks = codec.data_to_send()
    assert chunks[1] is body
    assert b"".join(chunks) == b"MESSAGE\ncontent-length:1048576\ndestination:/q\n\n" + body + b"\0"


@pytest.mark.parametrize(
    ("version", "command", "header"),
    [
        ("1.0", "MESSAGE", ("h", "a\nforged:1")),
        ("1.0", "MESSAGE", ("a:b", "v")),
        ("1.0", "MESSAGE", ("h", "v\r")),
        ("1.2", "CONNECTED", ("h", "a\nb")),
        ("1.1", "MESSAGE", ("h", "v\r")),
        ("1.2", "MESSAGE", ("", "v")),
        ("1.2", "MESSAGE", ("h", "\ud800")),
    ],
)
def test_send_refuses_headers_the_version_cannot_carry(
    version: str, command: str, header: tuple[str, str]
) -> None:
    codec = StompCodec()
    codec.version = version
    with pytest.raises(StompError):
        codec.send(Frame(command, (header,)))
    if command == "MESSAGE":
        with pytest.raises(StompError):
            codec.send_message([header], b"")
    assert codec.data_to_send() == []  # nothing half-queued


def test_send_refuses_unknown_commands() -> None:
    with pytest.raises(StompError, match="cannot send unknown command 'FOO'"):
        StompCodec().send(Frame("FOO", ()))


def test_raw_colon_in_a_value_is_accepted_in_every_version() -> None:
    # 1.0 allows it; 1.1+ peers should escape it, but stomp.py does not escape
    # header *names*, so be lenient and split on the first colon.
    for version in ("1.0", "1.1", "1.2"):
        frame = parse_one(b"SEND\nx:y:z\n\n\x00", version=version)
        assert frame.headers == (("x", "y:z"),)


# --- before CONNECT: the frame limit of an unauthenticated peer ----------------

SMALL_CONNECT = Limits(max_connect_frame=1024)


def test_unterminated_connect_is_refused_at_the_limit_and_its_bytes_dropped() -> None:
    codec = StompCodec(SMALL_CONNECT)
    head = b"CONNECT\naccept-version:1.2\n\n"
    codec.receive_data(head + b"x" * (1024 - len(head) - 1))  # NUL would still fit
    assert codec.events_received() == []
    with pytest.raises(StompError) as exc:
        codec.receive_data(b"x")
    assert exc.value.message == "frame exceeds 1024 bytes, the limit before CONNECT"
    assert len(codec._buf) == 0
    assert codec.pending_frame_offset is None
    # The byte-wise feed agrees; a default codec draws the line at 64 KiB.
    assert error_of(head + b"x" * 1024, limits=SMALL_CONNECT) == exc.value.message
    assert error_of(head + b"x" * (64 * 1024)) == (
        "frame exceeds 65536 bytes, the limit before CONNECT"
    )


def test_connect_of_exactly_the_limit_is_accepted() -> None:
    head = b"CONNECT\naccept-version:1.2\n\n"
    body = b"x" * (1024 - len(head) - 1)
    assert parse_one(head + body + b"\x00", limits=SMALL_CONNECT).body == body


def test_connect_announcing_a_body_over_the_limit_is_refused_before_it_arrives() -> None:
    data = b"CONNECT\naccept-version:1.2\ncontent-length:2000\n\n"
    assert error_of(data, limits=SMALL_CONNECT) == (
        "frame exceeds 1024 bytes, the limit before CONNECT"
    )


def test_connect_headers_count_against_the_limit() -> None:
    data = b"CONNECT\nx-pad:" + b"a" * 2000
    assert error_of(data, limits=SMALL_CONNECT) == "frame headers exceed 1024 bytes"
    # A smaller header limit still wins.
    limits = Limits(max_header_bytes=512, max_connect_frame=1024)
    assert error_of(data, limits=limits) == "frame headers exceed 512 bytes"


def test_a_frame_before_connect_is_held_to_the_same_limit() -> None:
    assert error_of(b"SEND\n\n" + b"b" * 2000, limits=SMALL_CONNECT) == (
        "frame exceeds 1024 bytes, the limit before CONNECT"
    )


def test_frames_after_connect_have_the_full_limits_even_pipelined() -> None:
    body = b"b" * 5000
    data = b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/queue/a\n\n" + body + b"\x00"
    for pieces in (None, one_by_one(data)):
        events, error = feed(data, pieces, limits=SMALL_CONNECT)
        assert error is None
        frames = [e for e in events if isinstance(e, Frame)]
        assert [f.command for f in frames] == ["CONNECT", "SEND"]
        assert frames[1].body == body


def test_a_client_codec_has_no_connect_limit() -> None:
    body = b"m" * 5000
    frame = parse_one(b"MESSAGE\n\n" + body + b"\x00", server=False, limits=SMALL_CONNECT)
    assert frame.body == body


def test_max_connect_frame_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connect_frame"):
        Limits(max_connect_frame=0)


# --- pending_frame_offset: what the driver times frames by ---------------------


def test_pending_frame_offset_names_the_frame_still_arriving() -> None:
    codec = StompCodec()
    assert codec.pending_frame_offset is None
    connect = b"CONNECT\naccept-version:1.2\n\n\x00"
    codec.receive_data(connect + b"\n")  # a frame and a heart-beat: nothing pending
    assert codec.pending_frame_offset is None
    codec.receive_data(b"SEND\ndestination:/queue/a\n\nabc")
    first = codec.pending_frame_offset
    assert first == len(connect) + 1
    codec.receive_data(b"def")  # the same frame, still arriving
    assert codec.pending_frame_offset == first
    codec.receive_data(b"\x00SEND\n")  # that one done, the next begun
    second = codec.pending_frame_offset
    assert second is not None and second > first
    codec.receive_data(b"\n\x00")
    assert codec.pending_frame_offset is None
    assert [e.command for e in codec.events_received() if isinstance(e, Frame)] == [
        "CONNECT",
        "SEND",
        "SEND",
    ]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_a_shared_message_tail_is_send_message_with_the_subscribers_headers_first(
    version: str,
) -> None:
    codec = StompCodec()
    codec.version = version
    shared = [("message-id", "ID:host-1:1"), ("destination", "/topic/t"), ("note", "a:b")]
    own = [("subscription", "s-1")]
    tail = codec.encode_message_tail([*shared, ("content-length", "9")], b"body")
    assert codec.data_to_send() == []  # encoding queues nothing
    codec.send_message_with(codec.encode_header_lines(own), tail)
    (fast,) = codec.data_to_send()
    assert fast.startswith(b"MESSAGE\nsubscription:s-1\ncontent-length:4\n")
    codec.send_message([*own, *shared], b"body")
    slow = b"".join(codec.data_to_send())
    # The same header lines (each escaped as this version escapes it) and body.
    fast_head, fast_body = fast.split(b"\n\n", 1)
    slow_head, slow_body = slow.split(b"\n\n", 1)
    assert sorted(fast_head.split(b"\n")) == sorted(slow_head.split(b"\n"))
    assert fast_body == slow_body == b"body\x00"


def test_a_large_shared_tail_keeps_the_body_apart() -> None:
    codec = StompCodec()
    body = b"x" * (1 << 20)
    tail = codec.encode_message_tail([("destination", "/q")], body)
    codec.send_message_with(b"subscription:1\n", tail)
    chunks = codec.data_to_send()
    assert any(chunk is body for chunk in chunks)
    assert b"".join(chunks) == (
        b"MESSAGE\nsubscription:1\ncontent-length:1048576\ndestination:/q\n\n" + body + b"\0"
    )


def test_a_shared_tail_refuses_headers_the_version_cannot_carry() -> None:
    codec = StompCodec()
    codec.version = "1.0"
    with pytest.raises(StompError):
        codec.encode_message_tail([("h", "a\nforged:1")], b"")
    with pytest.raises(StompError):
        codec.encode_header_lines([("a:b", "v")])


_HEADER_TEXT = st.text(alphabet=st.sampled_from("ab:\\\r\n c-é"), max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.lists(st.tuples(_HEADER_TEXT, _HEADER_TEXT), max_size=5),
    mode=st.sampled_from([0, 1, 2]),
)
def test_header_block_fast_paths_agree_with_escaping_each_header(
    headers: list[tuple[str, str]], mode: int
) -> None:
    """The whole-block shortcuts of the encoder give what escaping header by header gives."""
    from sealmq.wire.stomp.codec import _encode_header, _encode_headers

    try:
        expected = "".join(_encode_header(name, value, mode) + "\n" for name, value in headers)
    except StompError:
        with pytest.raises(StompError):
            _encode_headers(headers, mode)
        return
    assert _encode_headers(headers, mode) == expected


def test_message_ids_with_colons_are_escaped_from_stomp_1_1_on() -> None:
    from sealmq.wire.stomp.codec import _encode_headers

    headers = [("message-id", "ID:b-1:2:3"), ("ack", "7:ID:b-1:2:3"), ("priority", "4")]
    assert _encode_headers(headers, 2) == (
        "message-id:ID\\cb-1\\c2\\c3\nack:7\\cID\\cb-1\\c2\\c3\npriority:4\n"
    )
    assert _encode_headers(headers, 0) == "message-id:ID:b-1:2:3\nack:7:ID:b-1:2:3\npriority:4\n"


@settings(max_examples=300, deadline=None)
@given(receipt_id=_HEADER_TEXT, version=st.sampled_from(["1.0", "1.1", "1.2"]))
def test_send_receipt_queues_what_send_would(receipt_id: str, version: str) -> None:
    fast, generic = StompCodec(), StompCodec()
    fast.version = generic.version = version
    try:
        generic.send(Frame("RECEIPT", (("receipt-id", receipt_id),)))
    except StompError:
        with pytest.raises(StompError):
            fast.send_receipt(receipt_id)
        return
    fast.send_receipt(receipt_id)
    assert fast.data_to_send() == generic.data_to_send()


def _unescape_by_loop(text: str, table: dict[str, str]) -> str:
    out, it = [], iter(text)
    for ch in it:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(it, "")
        if nxt not in table:
            raise StompError("undefined escape")
        out.append(table[nxt])
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("\\cnrtx:"), max_size=8), v12=st.booleans())
def test_unescape_shortcut_agrees_with_the_definition(text: str, v12: bool) -> None:
    from sealmq.wire.stomp.codec import _UNESCAPES_11, _UNESCAPES_12, _unescape

    table = _UNESCAPES_12 if v12 else _UNESCAPES_11
    try:
        expected = _unescape_by_loop(text, table)
    except StompError:
        with pytest.raises(StompError):
            _unescape(text, table)
        return
    assert _unescape(text, table) == expected
