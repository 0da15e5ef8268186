"""Nothing a client hands the broker reaches the disk (or the log) in clear; damage is caught.

The broker runs as a real process. Markers go into every field the README lists as
protected (bodies, headers and their names, destinations, subscription names, client
ids, user names); afterwards every byte under the data folder is searched for them.
Then the journal is damaged on purpose (``docs/store.md``, segment layout in
``sealmq/store/journal.py``): a flipped byte stops the start, a torn tail is cut,
a cut past what was confirmed stops the start.
"""

from __future__ import annotations

import base64
import secrets
import stat
import struct
import subprocess
from pathlib import Path

import pytest
import stomp

from tests.support import (
    TIMEOUT,
    BrokerProcess,
    Collector,
    ProcessBrokers,
    sealmq_command,
    stomp_connect,
    wait_until,
)

TOKEN = secrets.token_hex(6)
#: Where each marker goes; every one of them must stay off the disk.
MARKERS = {
    "body": f"BodyMarker{TOKEN}",
    "non-ascii body": f"Körper–Ünïcødé–{TOKEN}",
    "header value": f"HeaderValueMarker{TOKEN}",
    "header name": f"headernamemarker{TOKEN}",
    "correlation-id": f"CorrelationMarker{TOKEN}",
    "type": f"TypeMarker{TOKEN}",
    "group id": f"GroupMarker{TOKEN}",
    "queue": f"QueueMarker{TOKEN}",
    "reply-to queue": f"ReplyToMarker{TOKEN}",
    "topic": f"TopicMarker{TOKEN}",
    "subscription name": f"SubscriptionMarker{TOKEN}",
    "client id": f"ClientIdMarker{TOKEN}",
    "user name": f"UserMarker{TOKEN}",
    "transacted body": f"TransactedBodyMarker{TOKEN}",
}
#: What the log must not show either (names of users, clients and destinations may appear).
SECRET_IN_LOGS = (
    "body",
    "non-ascii body",
    "header value",
    "correlation-id",
    "type",
    "group id",
    "transacted body",
)
MARKER_USER, MARKER_PASSWORD = MARKERS["user name"], f"pw-{TOKEN}"

# Records as sealmq/store/journal.py frames them: u32 n, u32 n ^ 0xFFFFFFFF, n bytes.
_FRAME = struct.Struct(">II")
_FRAME_CHECK = 0xFFFFFFFF


def connect(broker: BrokerProcess, **kw: str) -> tuple[stomp.Connection, Collector]:
    return stomp_connect(broker.stomp_port, broker.ca_file, **kw)


def encodings(marker: str) -> dict[str, bytes]:
    """The marker as UTF-8, UTF-16, hex and base64 (every alignment), as it could leak."""
    raw = marker.encode()
    forms = {
        "utf-8": raw,
        "utf-16-le": marker.encode("utf-16-le"),
        "utf-16-be": marker.encode("utf-16-be"),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * shift + raw)
            # Drop the groups that depend on the bytes around the marker.
            forms[f"{name}+{shift}"] = text[4:-4]
    return forms


def protected_files(data_dir: Path) -> list[Path]:
    return [
        path
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and path.relative_to(data_dir).parts[0] != "logs"
    ]


def leaks(data_dir: Path) -> list[str]:
    found = []
    files = {path: path.read_bytes() for path in protected_files(data_dir)}
    for where, marker in MARKERS.items():
        for form, needle in encodings(marker).items():
            for path, data in files.items():
                if needle in data:
                    found.append(f"{where} ({form}) in {path.relative_to(data_dir)}")
    return found


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").glob("*.seg"))


def records(segment: bytes) -> list[tuple[int, int]]:
    """(offset, ciphertext length) of each record of a segment.

    Only the record framing is relied on, not the header layout: the records are the
    first chain of valid frames that ends exactly at the end of the file.
    """
    for start in range(len(segment) - _FRAME.size):
        found, pos = [], start
        while pos + _FRAME.size <= len(segment):
            n, check = _FRAME.unpack_from(segment, pos)
            if n ^ check != _FRAME_CHECK or pos + _FRAME.size + n > len(segment):
                break
            found.append((pos, n))
            pos += _FRAME.size + n
        if found and pos == len(segment):
            return found
    raise AssertionError("no chain of record frames reaches the end of the segment")


def send_one_by_one(conn: stomp.Connection, got: Collector, bodies: list[str]) -> None:
    """One persistent send at a time, each waiting for its receipt: one journal record each."""
    for i, body in enumerate(bodies):
        conn.send("/queue/ledger", body, headers={"persistent": "true"}, receipt=f"r{i}")
        wait_until(lambda i=i: f"r{i}" in got.receipts, what=f"receipt r{i}")


def run_to_exit(broker: BrokerProcess) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            sealmq_command(broker.config),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the broker started anyway: {exc.stdout!r}") from None


@pytest.mark.slow
def test_nothing_clients_send_is_stored_or_logged_in_clear(processes: ProcessBrokers) -> None:
    broker = processes.new(
        users=(("app", "app-secret-12"), (MARKER_USER, MARKER_PASSWORD)), log_level='"debug"'
    ).start()
    m = MARKERS
    queue, topic = f"/queue/{m['queue']}", f"/topic/{m['topic']}"
    durable = {"activemq.subscriptionName": m["subscription name"]}

    subscriber, got = connect(
        broker, login=MARKER_USER, passcode=MARKER_PASSWORD, client_id=m["client id"]
    )
    subscriber.subscribe(
        topic, id="s", ack="client-individual", headers={**durable, "receipt": "s"}
    )
    wait_until(lambda: "s" in got.receipts, what="SUBSCRIBE receipt")
    subscriber.disconnect()

    conn, sent = connect(broker, login=MARKER_USER, passcode=MARKER_PASSWORD)
    headers = {
        "persistent": "true",
        "x-note": m["header value"],
        m["header name"]: "v",
        "correlation-id": m["correlation-id"],
        "type": m["type"],
        "JMSXGroupID": m["group id"],
        "reply-to": f"/queue/{m['reply-to queue']}",
    }
    conn.send(queue, m["body"] * 100, headers=headers, receipt="q1")
    conn.send(queue, m["non-ascii body"], headers=headers, receipt="q2")
    conn.send(topic, m["body"], headers=headers, receipt="t1")
    tx = conn.begin()
    conn.send(queue, m["transacted body"], headers=headers, transaction=tx)
    conn.commit(tx, headers={"receipt": "c1"})
    wait_until(lambda: {"q1", "q2", "t1", "c1"} <= set(sent.receipts), what="receipts")
    conn.disconnect()
    assert broker.stop() == 0

    data_dir = broker.data_dir
    stored = sum(path.stat().st_size for path in segments(data_dir))
    assert stored > len(m["body"]) * 100, "the messages did not reach the journal"
    assert leaks(data_dir) == []
    log = broker.output()
    assert [name for name in SECRET_IN_LOGS if m[name] in log] == []

    # Control: the scanned files really hold the messages.
    broker.start()
    consumer, got = connect(broker, login=MARKER_USER, passcode=MARKER_PASSWORD)
    consumer.subscribe(queue, id="q", ack="auto")
    frames = got.take(3)
    assert [f.body for f in frames] == [m["body"] * 100, m["non-ascii body"], m["transacted body"]]
    assert frames[0].headers["x-note"] == m["header value"]
    assert frames[0].headers[m["header name"]] == "v"
    assert frames[0].headers["correlation-id"] == m["correlation-id"]
    consumer.disconnect()
    subscriber, got = connect(
        broker, login=MARKER_USER, passcode=MARKER_PASSWORD, client_id=m["client id"]
    )
    subscriber.subscribe(topic, id="s", ack="auto", headers=durable)
    assert got.get().body == m["body"]
    subscriber.disconnect()
    assert broker.stop() == 0

    # Acks and any compaction wrote new records: still nothing in clear.
    assert leaks(data_dir) == []
    log = broker.output()
    assert [name for name in SECRET_IN_LOGS if m[name] in log] == []


@pytest.mark.slow
def test_data_folder_is_private(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    conn, got = connect(broker)
    conn.send("/queue/private", "x", headers={"persistent": "true"}, receipt="r")
    wait_until(lambda: "r" in got.receipts, what="receipt")
    conn.disconnect()
    assert broker.stop() == 0

    data_dir = broker.data_dir
    wrong = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        if path != data_dir and path.relative_to(data_dir).parts[0] == "logs":
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            wrong.append(f"{path.relative_to(data_dir)}: {mode:o}")
    assert wrong == []
    assert segments(data_dir), "no journal segment was written"


@pytest.mark.slow
def test_a_flipped_byte_in_a_record_stops_the_start(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    conn, got = connect(broker)
    send_one_by_one(conn, got, [f"entry-{i}" for i in range(9)])
    conn.disconnect()
    assert broker.stop() == 0

    segment = max(segments(broker.data_dir), key=lambda path: len(records(path.read_bytes())))
    data = bytearray(segment.read_bytes())
    spans = records(bytes(data))
    assert len(spans) >= 3, spans
    offset, n = spans[len(spans) // 2]
    data[offset + _FRAME.size + n // 2] ^= 0x01  # inside the ciphertext of a middle record
    segment.write_bytes(bytes(data))

    result = run_to_exit(broker)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert segment.name in output
    assert "failed authentication" in output
    assert "ready: " not in output
    assert "Traceback" not in output  # one line an operator can act on
    assert "RuntimeWarning" not in output


@pytest.mark.slow
def test_a_torn_tail_is_cut_and_reported_and_the_rest_is_served(
    processes: ProcessBrokers,
) -> None:
    broker = processes.new().start()
    conn, got = connect(broker)
    bodies = [f"entry-{i}" for i in range(10)]
    send_one_by_one(conn, got, bodies)
    broker.kill9()

    segment = segments(broker.data_dir)[-1]
    # What a crash in the middle of writing a next batch leaves: a frame running past the end.
    torn = _FRAME.pack(500, 500 ^ _FRAME_CHECK) + bytes(range(100))
    segment.write_bytes(segment.read_bytes() + torn)

    broker.start()
    output = broker.run_output()
    assert "torn write" in output
    assert segment.name in output
    consumer, got = connect(broker)
    consumer.subscribe("/queue/ledger", id="c", ack="client-individual")
    assert [frame.body for frame in got.take(len(bodies))] == bodies
    assert got.nothing_more()


def test_a_cut_past_what_was_confirmed_stops_the_start(processes: ProcessBrokers) -> None:
    broker = processes.new().start()
    conn, got = connect(broker)
    send_one_by_one(conn, got, [f"entry-{i}" for i in range(10)])
    broker.kill9()

    segment = segments(broker.data_dir)[-1]
    data = segment.read_bytes()
    offset, n = records(data)[-1]
    # Mid-record, as a torn write looks: but this record's RECEIPT was sent.
    segment.write_bytes(data[: offset + _FRAME.size + n // 2])

    result = run_to_exit(broker)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{segment.name} was cut short of what was confirmed" in output
    assert "torn write" not in output and "ready: " not in output
    assert "Traceback" not in output
