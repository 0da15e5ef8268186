"""STOMP 1.0/1.1/1.2 normative statements, one class per spec chapter.

Chapter names follow https://stomp.github.io/stomp-specification-1.2.html;
each test's docstring gives the statement it covers.
"""

from __future__ import annotations

import pytest

from sealmq.wire.stomp import Frame, Heartbeat, Limits, StompCodec, StompError

from .test_stomp_codec import error_of, feed, one_by_one, parse_one


class TestStompFrames:
    def test_eol_is_an_optional_cr_then_lf(self) -> None:
        """1.2: a command and each header are terminated by an EOL, [CR] LF."""
        lf = parse_one(b"SEND\ndestination:/q\nx:1\n\nbody\x00", version="1.2")
        crlf = parse_one(b"SEND\r\ndestination:/q\r\nx:1\r\n\r\nbody\x00", version="1.2")
        assert lf == crlf == Frame("SEND", (("destination", "/q"), ("x", "1")), b"body")

    def test_only_one_cr_belongs_to_the_eol(self) -> None:
        """The CR of an EOL is a single optional octet; a second one is data."""
        assert parse_one(b"SEND\nx:1\r\r\n\n\x00").get("x") == "1\r"

    def test_eols_after_the_null_are_heart_beats(self) -> None:
        """The NULL octet can be optionally followed by multiple EOLs."""
        wire = b"\r\nDISCONNECT\n\n\x00\n\r\n\n"
        events, error = feed(wire)
        assert error is None
        assert events == [
            Heartbeat(),
            Frame("DISCONNECT", ()),
            Heartbeat(),
            Heartbeat(),
            Heartbeat(),
        ]
        assert feed(wire, one_by_one(wire)) == (events, None)

    def test_commands_are_case_sensitive(self) -> None:
        """All commands and header names referenced in this document are case sensitive."""
        assert error_of(b"Send\n\n\x00") == "unknown command 'Send'"
        assert parse_one(b"SEND\nDestination:/q\n\n\x00").get("destination") is None

    def test_frames_not_in_the_list_are_refused(self) -> None:
        """A frame not in the client list: a 1.2 server MAY send ERROR and close."""
        assert error_of(b"PUBLISH\n\n\x00") == "unknown command 'PUBLISH'"

    def test_a_header_line_needs_a_colon(self) -> None:
        """header = header-name ":" header-value (Augmented BNF)."""
        assert error_of(b"SEND\ndestination /q\n\n\x00") == "header line without ':'"

    def test_header_names_are_not_empty(self) -> None:
        """header-name = 1*<any OCTET except CR or LF or ":"> (Augmented BNF)."""
        assert error_of(b"SEND\n:v\n\n\x00") == "header with an empty name"

    def test_header_values_may_be_empty(self) -> None:
        """header-value = *<any OCTET except CR or LF or ":"> (Augmented BNF)."""
        assert parse_one(b"SEND\nx:\n\n\x00").get("x") == ""


class TestValueEncoding:
    def test_headers_are_utf8(self) -> None:
        """The commands and headers are encoded in UTF-8."""
        frame = parse_one("SEND\nnöm:wért 😀\n\n\x00".encode(), version="1.2")
        assert frame.get("nöm") == "wért 😀"
        assert error_of(b"SEND\nx:\xe9\n\n\x00", version="1.2").endswith("not valid UTF-8")

    @pytest.mark.parametrize("version", ["1.1", "1.2"])
    def test_decoding_transformations(self, version: str) -> None:
        """\\n is LF, \\c is ':', \\\\ is '\\' (1.1 and 1.2); in names too."""
        frame = parse_one(b"SEND\nk\\ce\\\\y:a\\nb\\cc\\\\d\n\n\x00", version=version)
        assert frame.headers == (("k:e\\y", "a\nb:c\\d"),)

    def test_backslash_r_is_carriage_return_in_12(self) -> None:
        """1.2: \\r (octet 92 and 114) translates to carriage return (octet 13)."""
        assert parse_one(b"SEND\nx:a\\rb\n\n\x00", version="1.2").get("x") == "a\rb"

    @pytest.mark.parametrize(("version", "escape"), [("1.1", b"\\r"), ("1.2", b"\\t")])
    def test_undefined_escape_sequences_are_fatal(self, version: str, escape: bytes) -> None:
        """Undefined escape sequences such as \\t MUST be treated as a fatal protocol error."""
        message = error_of(b"SEND\nx:" + escape + b"\n\n\x00", version=version)
        assert message == f"undefined escape sequence '{escape.decode()}' in header"

    def test_a_trailing_lone_backslash_is_an_undefined_escape(self) -> None:
        assert error_of(b"SEND\nx:a\\\n\n\x00", version="1.2") == (
            "undefined escape sequence '\\' in header"
        )

    def test_stomp_10_has_no_escapes(self) -> None:
        """1.0 defines no escaping: a backslash is just a backslash."""
        assert parse_one(b"SEND\nx:a\\tb\\c\n\n\x00").get("x") == "a\\tb\\c"

    @pytest.mark.parametrize("command", [b"CONNECT", b"STOMP"])
    def test_connect_is_not_unescaped(self, command: bytes) -> None:
        """The CONNECT and CONNECTED frames do not escape CR, LF or colon (1.2);
        STOMP is handled in the same manner as CONNECT."""
        wire = command + b"\naccept-version:1.2\npasscode:a\\cb\\t\n\n\x00"
        assert parse_one(wire, version="1.2").get("passcode") == "a\\cb\\t"

    def test_connected_is_neither_unescaped_nor_escaped(self) -> None:
        wire = b"CONNECTED\nversion:1.2\nserver:x\\cy\n\n\x00"
        assert parse_one(wire, server=False, version="1.2").get("server") == "x\\cy"
        codec = StompCodec()
        codec.version = "1.2"
        codec.send(Frame("CONNECTED", (("version", "1.2"), ("server", "a\\b"))))
        assert codec.data_to_send() == [b"CONNECTED\nversion:1.2\nserver:a\\b\n\n\x00"]

    @pytest.mark.parametrize("version", ["1.1", "1.2"])
    def test_reverse_transformation_when_encoding(self, version: str) -> None:
        """Conversely when encoding frame headers, the reverse transformation MUST be applied."""
        codec = StompCodec()
        codec.version = version
        codec.send(Frame("MESSAGE", (("a:b", "c\nd\\e"),)))
        assert codec.data_to_send() == [b"MESSAGE\na\\cb:c\\nd\\\\e\n\n\x00"]

    def test_carriage_return_is_escaped_in_12(self) -> None:
        """1.2 frames escape any carriage return, line feed or colon."""
        codec = StompCodec()
        codec.version = "1.2"
        codec.send(Frame("MESSAGE", (("x", "a\r"),)))
        assert codec.data_to_send() == [b"MESSAGE\nx:a\\r\n\n\x00"]

    @pytest.mark.parametrize("version", ["1.1", "1.2"])
    def test_headers_are_never_trimmed_from_11_on(self, version: str) -> None:
        """1.2: clients and servers MUST never trim or pad headers with spaces."""
        frame = parse_one(b"SEND\n x : y \n\n\x00", version=version)
        assert frame.headers == ((" x ", " y "),)

    def test_stomp_10_values_are_trimmed(self) -> None:
        """The 1.0 spec's examples pad values ("ack: client") and 1.0 servers trimmed them."""
        frame = parse_one(b"SUBSCRIBE\ndestination: /queue/foo\nack: client \n\n\x00")
        assert frame.headers == (("destination", "/queue/foo"), ("ack", "client"))

    def test_stomp_10_connect_is_trimmed(self) -> None:
        """1.0's own CONNECT example: "login: <username>"; no accept-version means 1.0 only."""
        frame = parse_one(b"CONNECT\nlogin: alice\npasscode:secret\n\n\x00")
        assert frame.headers == (("login", "alice"), ("passcode", "secret"))

    def test_connect_offering_11_or_later_is_not_trimmed(self) -> None:
        """A CONNECT is parsed before negotiation; one offering 1.1+ keeps its spaces."""
        wire = b"CONNECT\naccept-version:1.0,1.1,1.2\npasscode: secret \n\n\x00"
        assert parse_one(wire).get("passcode") == " secret "
        wire = b"CONNECT\naccept-version:1.0\npasscode: secret \n\n\x00"
        assert parse_one(wire).get("passcode") == "secret"

    def test_a_10_value_may_hold_colons(self) -> None:
        """1.0: header-value = 1*<any CHAR except LF>; the name ends at the first ':'."""
        assert parse_one(b"SEND\nurl:http://x:80/\n\n\x00").get("url") == "http://x:80/"

    def test_unencodable_headers_are_refused_not_forged(self) -> None:
        """1.0 and CONNECT/CONNECTED cannot carry LF: refuse rather than inject a header."""
        codec = StompCodec()
        with pytest.raises(StompError, match="cannot be sent unescaped"):
            codec.send_message([("x", "1\nforged:yes")], b"")
        assert codec.data_to_send() == []


class TestBody:
    def test_body_runs_to_the_first_null_without_content_length(self) -> None:
        events, error = feed(b"SEND\n\nab\x00cd\x00")
        assert error is not None  # "cd" is not a command
        assert events == [Frame("SEND", (), b"ab")]

    def test_body_may_be_binary(self) -> None:
        """STOMP is text based but also allows for the transmission of binary messages."""
        body = bytes(range(1, 256))
        assert parse_one(b"SEND\n\n" + body + b"\x00").body == body


class TestHeaderContentLength:
    def test_that_many_octets_are_read_regardless_of_nulls(self) -> None:
        """If content-length is included, this number of octets MUST be read,
        regardless of whether or not there are NULL octets in the body."""
        frame = parse_one(b"SEND\ncontent-length:5\n\n\x00a\x00b\x00\x00")
        assert frame.body == b"\x00a\x00b\x00"

    def test_the_frame_still_needs_a_null(self) -> None:
        """The frame still needs to be terminated with a NULL octet."""
        message = error_of(b"SEND\ncontent-length:1\n\nab\x00")
        assert message.startswith("frame body is not followed by NUL")

    def test_any_frame_may_carry_content_length(self) -> None:
        """1.2: All frames MAY include a content-length header."""
        assert parse_one(b"ACK\nid:1\ncontent-length:0\n\n\x00").body == b""

    def test_zero_padded_length_is_a_number(self) -> None:
        assert parse_one(b"SEND\ncontent-length:0003\n\nabc\x00").body == b"abc"

    def test_content_length_is_checked_in_10_after_trimming(self) -> None:
        assert parse_one(b"SEND\ncontent-length: 3\n\nabc\x00").body == b"abc"
        assert error_of(b"SEND\ncontent-length: 3\n\nabc\x00", version="1.2") == (
            "content-length is not a number"
        )

    def test_sent_frames_with_a_body_carry_content_length(self) -> None:
        """SEND, MESSAGE and ERROR SHOULD include content-length if a body is present;
        a body containing NULL octets MUST."""
        codec = StompCodec()
        codec.send(Frame("ERROR", (("message", "x"),), b"a\x00b"))
        assert codec.data_to_send() == [b"ERROR\nmessage:x\ncontent-length:3\n\na\x00b\x00"]


class TestRepeatedHeaderEntries:
    def test_first_entry_is_the_value(self) -> None:
        """If a client or a server receives repeated frame header entries, only the
        first header entry SHOULD be used; later ones are kept as history."""
        frame = parse_one(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\x00", server=False)
        assert frame.get("foo") == "World"
        assert frame.headers == (("foo", "World"), ("foo", "Hello"))

    def test_first_content_length_frames_the_body(self) -> None:
        frame = parse_one(b"SEND\ncontent-length:3\ncontent-length:1\n\na\x00c\x00")
        assert frame.body == b"a\x00c"


class TestSizeLimits:
    """Servers MAY limit the number of headers, the header size and the body size;
    if exceeded the server SHOULD send an ERROR frame and close the connection."""

    def test_number_of_headers(self) -> None:
        message = error_of(b"SEND\na:1\nb:2\n\n\x00", limits=Limits(max_headers=1))
        assert message == "frame has more than 1 headers"

    def test_length_of_headers(self) -> None:
        message = error_of(
            b"SEND\na:" + b"x" * 100 + b"\n\n\x00", limits=Limits(max_header_bytes=64)
        )
        assert message == "frame headers exceed 64 bytes"

    def test_size_of_body(self) -> None:
        assert error_of(b"SEND\n\n" + b"x" * 11, limits=Limits(max_body=10)) == (
            "frame body exceeds 10 bytes"
        )
        assert error_of(b"SEND\ncontent-length:11\n\n", limits=Limits(max_body=10)) == (
            "frame body exceeds 10 bytes"
        )

    def test_the_error_is_ready_for_an_error_frame(self) -> None:
        codec = StompCodec(Limits(max_body=10))
        with pytest.raises(StompError) as exc:
            codec.receive_data(b"SEND\ncontent-length:99\n\n")
        codec.send(Frame("ERROR", (("message", exc.value.message),)))
        assert codec.data_to_send() == [b"ERROR\nmessage:frame body exceeds 10 bytes\n\n\x00"]


class TestConnectOrStompFrame:
    def test_stomp_is_handled_like_connect(self) -> None:
        """STOMP servers MUST handle a STOMP frame in the same manner as a CONNECT frame."""
        connect = parse_one(b"CONNECT\naccept-version:1.2\nhost:h\n\n\x00")
        stomp = parse_one(b"STOMP\naccept-version:1.2\nhost:h\n\n\x00")
        assert connect.headers == stomp.headers


class TestHeartBeating:
    def test_a_heart_beat_is_an_eol(self) -> None:
        """If the sender has no real STOMP frame to send, it MUST send an end-of-line (EOL)."""
        codec = StompCodec()
        codec.send_heartbeat()
        assert codec.data_to_send() == [b"\n"]

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_each_eol_between_frames_is_one_heart_beat(self, eol: bytes) -> None:
        wire = eol * 3
        assert feed(wire) == ([Heartbeat()] * 3, None)
        assert feed(wire, one_by_one(wire)) == ([Heartbeat()] * 3, None)

    def test_a_cr_waits_for_its_lf(self) -> None:
        codec = StompCodec()
        codec.receive_data(b"\r")
        assert codec.events_received() == []
        codec.receive_data(b"\n")
        assert codec.events_received() == [Heartbeat()]


class TestProtocolNegotiation:
    """The protocol used for the rest of the session is the highest version both
    sides have in common; no accept-version means the client only supports 1.0."""

    @pytest.mark.parametrize(
        ("accept", "version"),
        [
            (b"accept-version:1.0,1.1,1.2\n", "1.2"),
            (b"accept-version:1.0,1.1,2.0\n", "1.1"),
            (b"accept-version:1.0\n", "1.0"),
            (b"accept-version:2.0\n", "1.0"),
            (b"", "1.0"),
        ],
    )
    def test_connect_switches_the_codec_to_the_negotiated_version(
        self, accept: bytes, version: str
    ) -> None:
        codec = StompCodec()
        codec.receive_data(b"CONNECT\n" + accept + b"host:h\n\n\x00")
        assert codec.version == version

    def test_frames_pipelined_behind_connect_use_the_new_escaping(self) -> None:
        wire = (
            b"STOMP\naccept-version:1.2\nhost:h\n\n\x00"
            b"SUBSCRIBE\nid:1\ndestination:/queue/a\\cb\nselector:x = ' y'\r\n\r\n\x00"
        )
        expected = Frame(
            "SUBSCRIBE", (("id", "1"), ("destination", "/queue/a:b"), ("selector", "x = ' y'"))
        )
        events, error = feed(wire)
        assert error is None
        assert events[1] == expected
        assert feed(wire, one_by_one(wire)) == (events, None)

    def test_a_10_client_keeps_10_rules(self) -> None:
        events, error = feed(b"CONNECT\nlogin: a\n\n\x00SEND\ndestination: /q\\c\n\n\x00")
        assert error is None
        assert events[1] == Frame("SEND", (("destination", "/q\\c"),))

    def test_the_client_side_follows_connected(self) -> None:
        codec = StompCodec(server=False)
        codec.receive_data(b"CONNECTED\nversion:1.1\n\n\x00MESSAGE\nx:a\\cb\n\n\x00")
        assert codec.version == "1.1"
        assert codec.events_received()[1] == Frame("MESSAGE", (("x", "a:b"),))

    def test_only_the_first_connect_counts_and_the_adapter_has_the_last_word(self) -> None:
        codec = StompCodec()
        codec.receive_data(b"CONNECT\naccept-version:1.1\n\n\x00")
        codec.receive_data(b"CONNECT\naccept-version:1.2\n\n\x00")
        assert codec.version == "1.1"

        codec = StompCodec()
        codec.version = "1.1"
        codec.receive_data(b"CONNECT\naccept-version:1.2\n\n\x00")
        assert codec.version == "1.1"
