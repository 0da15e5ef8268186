"""The journal: sealed segments, group commit, torn tails, corruption, moved records."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from sealmq.store import journal as journal_module
from sealmq.store.errors import (
    CorruptRecordError,
    JournalIntegrityError,
    KeyUnavailableError,
    StoreClosedError,
    StoreError,
)
from sealmq.store.journal import SEGMENT_MAGIC, Journal, JournalRecord
from sealmq.store.keys import DataKeyCache
from tests.store.conftest import FakeClock, FakeKeyProvider

BROKER = "broker-1"


def journal(
    path: Path,
    keys: FakeKeyProvider,
    broker: str = BROKER,
    clock: FakeClock | None = None,
    **kw: Any,
) -> Journal:
    cache = DataKeyCache(keys, 10, clock=clock) if clock else DataKeyCache(keys)
    return Journal(path, broker, cache, **kw)


def replay(path: Path, keys: FakeKeyProvider, **kw: Any) -> tuple[Journal, list[JournalRecord]]:
    j = journal(path, keys, **kw)
    return j, list(j.replay())


async def write(path: Path, keys: FakeKeyProvider, payloads: list[bytes], **kw: Any) -> Journal:
    j, _ = replay(path, keys, **kw)
    await asyncio.gather(*(j.append(p) for p in payloads))
    await j.close()
    return j


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


PAYLOADS = [f"payload-{i}".encode() * 3 for i in range(5)]


@pytest.mark.asyncio
async def test_append_then_replay_in_order(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    j, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == PAYLOADS
    assert [r.index for r in records] == [1, 2, 3, 4, 5]
    assert j.recovery_report.records == 5 and j.recovery_report.torn_tail is None
    assert fake_keys.decrypted == 1  # one data key per segment, unwrapped once


@pytest.mark.asyncio
async def test_every_restart_starts_a_new_segment(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS[:2])
    await write(tmp_path, fake_keys, PAYLOADS[2:])
    j, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == PAYLOADS
    assert [r.segment for r in records] == [1, 1, 2, 2, 2]
    assert j.segments == [1, 2]
    assert fake_keys.generated == 2


@pytest.mark.asyncio
async def test_rotation_at_segment_size(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    payloads = [os.urandom(100) for _ in range(30)] + [os.urandom(3000)]
    j = await write(tmp_path, fake_keys, payloads, segment_size=1000)
    assert len(j.segments) > 3
    for number in j.segments[:-1]:
        assert j.segment_path(number).stat().st_size <= 1000
    # A record larger than a segment gets a segment of its own.
    assert j.segment_path(j.segments[-1]).stat().st_size > 3000
    _, records = replay(tmp_path, fake_keys, segment_size=1000)
    assert [r.payload for r in records] == payloads


@pytest.mark.asyncio
async def test_group_commit_shares_one_fsync_and_one_wakeup(
    tmp_path: Path, fake_keys: FakeKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The confirmed record's own periodic fsync (due after confirmed_sync_seconds) is
    # not what this counts: on a slow machine it could fall into the batch.
    j, _ = replay(tmp_path, fake_keys, confirmed_sync_seconds=3600)
    loop = asyncio.get_running_loop()
    wakeups: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wakeups.append(callback)
        return original(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    gate = threading.Event()
    blocked = j.call_in_writer(gate.wait)  # hold the writer so that everything queues up
    futures = [j.append(b"record %d" % i) for i in range(500)]
    gate.set()
    await blocked
    await asyncio.gather(*futures)
    assert j.fsync_count == 1
    assert j.records_written == 500
    assert len(wakeups) == 2  # the control call, then the whole batch at once
    # Without holding the writer, concurrent appends still share fsyncs.
    await asyncio.gather(*(j.append(b"more %d" % i) for i in range(500)))
    assert j.fsync_count < 250
    await j.close()


@pytest.mark.asyncio
async def test_files_are_private(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    j = await write(tmp_path / "journal", fake_keys, PAYLOADS)
    assert stat.S_IMODE((tmp_path / "journal").stat().st_mode) == 0o700
    for number in j.segments:
        assert stat.S_IMODE(j.segment_path(number).stat().st_mode) == 0o600


def tear(path: Path) -> int:
    """Append what a crash during a batch's write leaves: a frame running past the end."""
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(struct.pack(">II", 200, 200 ^ 0xFFFFFFFF) + os.urandom(50))
    return size


@pytest.mark.asyncio
async def test_torn_tail_is_cut_reported_and_the_rest_kept(
    tmp_path: Path, fake_keys: FakeKeyProvider, caplog: pytest.LogCaptureFixture
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    seg = tmp_path / "00000001.seg"
    clean = tear(seg)
    with caplog.at_level(logging.WARNING, logger="sealmq.store"):
        j, again = replay(tmp_path, fake_keys)
    assert [r.payload for r in again] == PAYLOADS
    torn = j.recovery_report.torn_tail
    assert torn is not None
    assert torn.path == seg and torn.offset == clean
    assert torn.discarded_bytes == 58
    assert seg.stat().st_size == clean  # cut on disk
    assert "00000001.seg" in caplog.text and "torn" in caplog.text
    assert "payload" not in caplog.text
    # The cut segment is now an ordinary older segment: later runs see no damage.
    await asyncio.gather(j.append(b"after"))
    await j.close()
    j, final = replay(tmp_path, fake_keys)
    assert [r.payload for r in final] == [*PAYLOADS, b"after"]
    assert j.recovery_report.torn_tail is None


@pytest.mark.asyncio
@pytest.mark.parametrize("cut", [5, 40])
async def test_a_cut_past_the_confirmed_point_is_refused(
    tmp_path: Path, fake_keys: FakeKeyProvider, cut: int
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    seg = tmp_path / "00000001.seg"
    original = seg.read_bytes()
    os.truncate(seg, len(original) - cut)  # confirmed records lost, looking like a torn write
    with pytest.raises(JournalIntegrityError, match=r"00000001\.seg was cut short .* 5 were"):
        replay(tmp_path, fake_keys)
    assert seg.stat().st_size == len(original) - cut  # refused before changing anything


@pytest.mark.asyncio
async def test_a_missing_or_older_segment_is_refused(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    j, _ = replay(tmp_path, fake_keys)
    await j.append(PAYLOADS[0])
    early = (tmp_path / "00000001.seg").read_bytes()  # a backup taken while it was written
    await j.append(PAYLOADS[1])
    await j.close()
    one = (tmp_path / "00000001.seg").read_bytes()
    await write(tmp_path, fake_keys, PAYLOADS[2:4])
    two = (tmp_path / "00000002.seg").read_bytes()
    await write(tmp_path, fake_keys, PAYLOADS[4:])
    three = (tmp_path / "00000003.seg").read_bytes()

    (tmp_path / "00000002.seg").unlink()  # a middle segment
    with pytest.raises(JournalIntegrityError, match=r"00000002\.seg is missing") as err:
        replay(tmp_path, fake_keys)
    assert err.value.path == tmp_path / "00000002.seg"
    (tmp_path / "00000002.seg").write_bytes(two)

    (tmp_path / "00000003.seg").unlink()  # the newest
    with pytest.raises(JournalIntegrityError, match=r"00000003\.seg is missing"):
        replay(tmp_path, fake_keys)
    (tmp_path / "00000003.seg").write_bytes(three)

    (tmp_path / "00000001.seg").write_bytes(early)  # every record in it authenticates
    with pytest.raises(JournalIntegrityError, match=r"00000001\.seg holds 1 records.* 2"):
        replay(tmp_path, fake_keys)
    (tmp_path / "00000001.seg").write_bytes(one)
    _, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == PAYLOADS


@pytest.mark.asyncio
async def test_segments_deleted_by_the_journal_are_not_missing(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    j, _ = replay(tmp_path, fake_keys, segment_size=1)
    await asyncio.gather(*(j.append(p) for p in PAYLOADS[:4]))
    old = (tmp_path / "00000002.seg").read_bytes()
    assert await j.call_in_writer(lambda: j.delete_segments([2])) == [2]
    await j.close()
    j, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == [PAYLOADS[0], *PAYLOADS[2:4]]
    # The deleted segment put back is not part of the journal any more.
    (tmp_path / "00000002.seg").write_bytes(old)
    with pytest.raises(JournalIntegrityError, match=r"00000002\.seg is not part of the journal"):
        replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_partial_frame_and_zero_filled_tails_are_torn(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    seg = tmp_path / "00000001.seg"
    clean = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x00" * 4096)  # blocks allocated but never written before the crash
    j, records = replay(tmp_path, fake_keys)
    assert len(records) == 5 and j.recovery_report.torn_tail is not None
    assert seg.stat().st_size == clean
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01")  # less than a frame
    j, records = replay(tmp_path, fake_keys)
    assert len(records) == 5 and j.recovery_report.torn_tail is not None


@pytest.mark.asyncio
async def test_torn_segment_header_is_removed(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    (tmp_path / "00000002.seg").write_bytes(SEGMENT_MAGIC[:5])
    j, records = replay(tmp_path, fake_keys)
    assert len(records) == 5
    assert j.recovery_report.torn_tail is not None
    assert not (tmp_path / "00000002.seg").exists()
    assert j.segments == [1]


@pytest.mark.asyncio
@pytest.mark.parametrize("which", [0, 2, 4])
async def test_a_flipped_byte_in_a_record_stops_recovery(
    tmp_path: Path, fake_keys: FakeKeyProvider, which: int
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    _, records = replay(tmp_path, fake_keys)
    seg = tmp_path / "00000001.seg"
    flip(seg, records[which].offset + 8 + 3)
    with pytest.raises(CorruptRecordError) as err:
        replay(tmp_path, fake_keys)
    assert err.value.path == seg and err.value.offset == records[which].offset
    assert "00000001.seg" in str(err.value)


@pytest.mark.asyncio
async def test_a_flipped_length_or_tag_stops_recovery(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    _, records = replay(tmp_path, fake_keys)
    seg = tmp_path / "00000001.seg"
    original = seg.read_bytes()
    for offset in (records[1].offset + 2, records[2].offset - 1, records[4].offset + 1):
        seg.write_bytes(original)
        flip(seg, offset)
        with pytest.raises(CorruptRecordError):
            replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_a_damaged_header_stops_recovery(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    _, records = replay(tmp_path, fake_keys)
    seg = tmp_path / "00000001.seg"
    original = seg.read_bytes()
    # Every byte of the header and its tag is covered by something.
    for offset in range(0, records[0].offset):
        seg.write_bytes(original)
        flip(seg, offset)
        with pytest.raises((CorruptRecordError, KeyUnavailableError)):
            replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_truncated_older_segment_is_corruption(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS, segment_size=1)
    os.truncate(tmp_path / "00000002.seg", (tmp_path / "00000002.seg").stat().st_size - 1)
    with pytest.raises(CorruptRecordError, match=r"00000002\.seg"):
        replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_wrong_broker_is_detected(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    with pytest.raises(CorruptRecordError, match="another broker"):
        replay(tmp_path, fake_keys, broker="broker-2")


@pytest.mark.asyncio
async def test_moved_records_are_detected(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    same_size = [b"A" * 10, b"B" * 10, b"C" * 10, b"D" * 10]
    await write(tmp_path, fake_keys, same_size[:2])
    await write(tmp_path, fake_keys, same_size[2:])
    _, records = replay(tmp_path, fake_keys)
    one, two = tmp_path / "00000001.seg", tmp_path / "00000002.seg"
    r1, r2 = records[0].offset, records[1].offset
    n = r2 - r1
    data1, data2 = one.read_bytes(), two.read_bytes()

    # Swapped within a segment.
    swapped = data1[:r1] + data1[r2 : r2 + n] + data1[r1:r2] + data1[r2 + n :]
    one.write_bytes(swapped)
    with pytest.raises(CorruptRecordError, match="authentication"):
        replay(tmp_path, fake_keys)
    one.write_bytes(data1)

    # Copied from segment 1 into the same place in segment 2.
    r3 = records[2].offset
    two.write_bytes(data2[:r3] + data1[r1:r2] + data2[r3 + n :])
    with pytest.raises(CorruptRecordError, match=r"00000002\.seg"):
        replay(tmp_path, fake_keys)
    two.write_bytes(data2)

    # A whole segment renamed to another number.
    two.unlink()
    one.rename(two)
    with pytest.raises(CorruptRecordError, match=r"number|missing"):
        replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_segments_from_another_journal_fail(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path / "a", fake_keys, PAYLOADS)
    await write(tmp_path / "b", fake_keys, PAYLOADS)
    # Same broker id, same key: only the data key differs. The header tag catches it.
    a, b = (tmp_path / "a" / "00000001.seg").read_bytes(), (tmp_path / "b" / "00000001.seg")
    _, records = replay(tmp_path / "b", fake_keys)
    b.write_bytes(b.read_bytes()[: records[0].offset] + a[records[0].offset :])
    with pytest.raises(CorruptRecordError):
        replay(tmp_path / "b", fake_keys)


@pytest.mark.asyncio
async def test_revoked_key_stops_writes_after_the_cache_expires(
    tmp_path: Path, fake_keys: FakeKeyProvider, clock: FakeClock
) -> None:
    j, _ = replay(tmp_path, fake_keys, clock=clock)
    await j.append(b"one")
    fake_keys.available = False
    await j.append(b"two")  # the data key is still cached
    clock.now += 11
    with pytest.raises(KeyUnavailableError):
        await j.append(b"three")
    fake_keys.available = True
    await j.append(b"four")  # access is back: writing resumes
    await j.close()
    _, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == [b"one", b"two", b"four"]


@pytest.mark.asyncio
async def test_io_failure_fails_the_batch_and_everything_after(
    tmp_path: Path, fake_keys: FakeKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    j, _ = replay(tmp_path, fake_keys)
    await j.append(b"ok")

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module, "datasync", broken)
    with pytest.raises(StoreError, match="I/O"):
        await j.append(b"lost")
    monkeypatch.undo()
    with pytest.raises(StoreError, match="I/O"):
        await j.append(b"after")
    await j.close()


@pytest.mark.asyncio
async def test_lifecycle_errors(tmp_path: Path, fake_keys: FakeKeyProvider) -> None:
    j = journal(tmp_path, fake_keys)
    with pytest.raises(StoreError, match="replay"):
        await j.append(b"x")
    list(j.replay())
    with pytest.raises(StoreError):
        list(j.replay())
    await j.append(b"x")
    await j.close()
    await j.close()
    with pytest.raises(StoreClosedError):
        await j.append(b"y")
    with pytest.raises(StoreClosedError):
        await j.call_in_writer(lambda: None)


@pytest.mark.asyncio
async def test_the_newest_segment_is_never_deleted(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    j, _ = replay(tmp_path, fake_keys, segment_size=1)
    await asyncio.gather(*(j.append(p) for p in PAYLOADS[:3]))
    assert j.segments == [1, 2, 3]
    deleted = await j.call_in_writer(lambda: j.delete_segments([1, 2, 3]))
    assert deleted == [1, 2] and j.segments == [3]
    assert not (tmp_path / "00000001.seg").exists()
    await j.close()


@pytest.mark.asyncio
async def test_a_failing_durable_hook_does_not_stop_the_writer(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    seen: list[tuple[int, int, int, Any]] = []

    def hook(placed: list[tuple[int, int, int, Any]]) -> None:
        seen.extend(placed)
        raise RuntimeError("bug")

    j, _ = replay(tmp_path, fake_keys, on_durable=hook)
    await j.append(b"a", "tag-a")
    await j.append(b"b", "tag-b")
    await j.close()
    assert [(s, index, tag) for s, _, index, tag in seen] == [(1, 1, "tag-a"), (1, 2, "tag-b")]
    assert [j.read_record(s, offset, index) for s, offset, index, _ in seen] == [b"a", b"b"]


@pytest.mark.asyncio
async def test_the_confirmed_point_rides_each_batch_without_an_fsync_of_its_own(
    tmp_path: Path, fake_keys: FakeKeyProvider, clock: FakeClock
) -> None:
    j = Journal(tmp_path, BROKER, DataKeyCache(fake_keys), clock=clock)
    list(j.replay())
    for i in range(20):
        await j.append(b"batch %d" % i)
    assert j.fsync_count == 20
    assert j.confirmed_sync_count == 1  # when the segment was created
    clock.now += 1.5
    await j.append(b"late")
    assert j.confirmed_sync_count == 2  # at most once per confirmed_sync_seconds
    # The process dies here (no close): the confirmed point is in the page cache anyway.
    seg = tmp_path / "00000001.seg"
    os.truncate(seg, seg.stat().st_size - 3)
    with pytest.raises(JournalIntegrityError, match="21 were confirmed"):
        list(journal(tmp_path, fake_keys).replay())
    await j.close()


def wrapped_key(segment: Path) -> bytes:
    """The wrapped data key in a segment's header (the sixth field)."""
    data = segment.read_bytes()
    _, _, n, _ = struct.unpack_from(">8sHII", data)
    pos, fields = 18, []
    while pos < 18 + n:
        (size,) = struct.unpack_from(">I", data, pos)
        fields.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return fields[5]


@pytest.mark.asyncio
async def test_a_torn_write_of_the_confirmed_record_falls_back_to_the_other_slot(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS)
    confirmed = tmp_path / "confirmed"
    data = bytearray(confirmed.read_bytes())
    half = len(data) // 2
    slots = [bytes(data[:half]), bytes(data[half:])]
    assert slots[0] != slots[1]  # written alternately
    for slot in (0, 1):
        damaged = bytearray(data)
        damaged[slot * half + 40] ^= 0x01
        confirmed.write_bytes(bytes(damaged))
        _, records = replay(tmp_path, fake_keys)  # the other slot is still valid
        assert [r.payload for r in records] == PAYLOADS
    # A slot torn inside the wrapped data key fails at the key service: the other one decides.
    wrapped_at = data.index(wrapped_key(tmp_path / "00000001.seg"))
    assert wrapped_at < half
    torn = bytearray(data)
    torn[wrapped_at + 20] ^= 0x01
    confirmed.write_bytes(bytes(torn))
    _, records = replay(tmp_path, fake_keys)
    assert [r.payload for r in records] == PAYLOADS
    both = bytearray(data)
    both[40] ^= 0x01
    both[half + 40] ^= 0x01
    confirmed.write_bytes(bytes(both))
    with pytest.raises(JournalIntegrityError, match="confirmed record"):
        replay(tmp_path, fake_keys)


@pytest.mark.asyncio
async def test_a_deletion_cut_short_by_a_crash_is_finished_at_the_next_start(
    tmp_path: Path, fake_keys: FakeKeyProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    j, _ = replay(tmp_path, fake_keys, segment_size=1)
    await asyncio.gather(*(j.append(p) for p in PAYLOADS[:3]))
    # The crash comes after the confirmed record stopped listing segment 1, before the unlink.
    monkeypatch.setattr(journal_module, "remove_quietly", lambda path: None)
    assert await j.call_in_writer(lambda: j.delete_segments([1])) == [1]
    monkeypatch.undo()
    assert (tmp_path / "00000001.seg").exists()
    again, records = replay(tmp_path, fake_keys)  # no close(): as after kill -9
    assert [r.payload for r in records] == PAYLOADS[1:3]
    assert not (tmp_path / "00000001.seg").exists() and again.segments == [2, 3]
    await j.close()


@pytest.mark.asyncio
async def test_every_missing_segment_is_named_at_once(
    tmp_path: Path, fake_keys: FakeKeyProvider
) -> None:
    await write(tmp_path, fake_keys, PAYLOADS, segment_size=1)
    (tmp_path / "00000002.seg").unlink()
    (tmp_path / "00000004.seg").unlink()
    with pytest.raises(JournalIntegrityError, match=r"00000002\.seg is missing.*00000004\.seg"):
        replay(tmp_path, fake_keys)
