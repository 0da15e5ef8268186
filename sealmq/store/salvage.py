"""``sealmq store verify`` and ``sealmq store salvage``: read everything, report, set aside.

Both work on a :class:`FileStore` that was opened (its folder lock held) but not
recovered, with the broker stopped.

- :func:`examine` reads and authenticates every segment and record without
  changing anything, and works out what a salvage would keep: every segment
  except the damaged, orphaned and replaced ones.
- :func:`salvage` then moves those segments into ``journal/quarantine/`` (still
  encrypted) and records the rest as the whole journal, so the broker starts
  and serves what is left.

What is lost is counted by rebuilding the state twice, from everything that
still authenticates and from what salvage keeps: messages, subscriptions,
retained messages and sessions present in the first and not the second are
lost; messages present only in the second come back (their acknowledgements
were in a segment set aside). The content of a missing segment, of the part of
a damaged segment after the damage and of a confirmed tail that was cut is
unknown: the report says how many records each held.

Destination names, subscription and session keys are in the report, for the
operator's terminal only; nothing here logs them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealmq.core.ports import RecoveredState
from sealmq.store.errors import CorruptRecordError
from sealmq.store.files import remove_quietly
from sealmq.store.filestore import FileStore, StateBuilder
from sealmq.store.journal import JournalCheck, Problem, SegmentState
from sealmq.store.records import decode_record

__all__ = ["Examination", "examine", "salvage"]

#: Problem kinds that salvage resolves by moving the segment aside.
_SET_ASIDE = ("damaged", "orphan", "replaced")


@dataclass(slots=True)
class Examination:
    """What :func:`examine` found, and what :func:`salvage` did."""

    check: JournalCheck
    #: Segments salvage moves aside.
    set_aside: list[int]
    #: The segments salvage keeps, in order.
    kept: list[SegmentState]
    lost: RecoveredState
    delivered_again: RecoveredState
    unknown: list[str]
    quarantined: list[Path] = field(default_factory=list)
    salvaged: bool = False

    @property
    def intact(self) -> bool:
        return self.check.intact

    def report(self) -> dict[str, Any]:
        """The report as JSON-ready data (names included: for the operator's terminal)."""
        check = self.check
        point = check.point
        status: dict[int, str] = {}
        for problem in check.problems:
            if problem.segment is not None:
                status.setdefault(problem.segment, problem.kind)
        segments = []
        for state in check.segments:
            entry: dict[str, Any] = {
                "Segment": state.path.name,
                "Format": state.format,
                "Records": state.records,
                "Status": status.get(state.number, "ok"),
            }
            if state.torn is not None:
                entry["TornTailBytes"] = state.torn.discarded_bytes
            segments.append(entry)
        for number in check.orphans:
            segments.append({"Segment": f"{number:08d}.seg", "Status": "orphan"})
        for number in check.leftovers:
            segments.append({"Segment": f"{number:08d}.seg", "Status": "leftover"})
        segments.sort(key=lambda entry: str(entry["Segment"]))
        doc: dict[str, Any] = {
            "Intact": self.intact,
            "Segments": segments,
            "Missing": [f"{number:08d}.seg" for number in check.missing],
            "Problems": [problem.message for problem in check.problems],
        }
        if point is not None:
            doc["Confirmed"] = {
                "Segment": f"{point.last.number:08d}.seg",
                "Records": point.last.records,
            }
        if not self.intact:
            verb = "Lost" if self.salvaged else "SalvageWouldLose"
            doc["SetAside" if self.salvaged else "SalvageWouldSetAside"] = [
                f"{number:08d}.seg" for number in self.set_aside
            ]
            doc[verb] = _summary(self.lost)
            doc["DeliveredAgain" if self.salvaged else "SalvageWouldDeliverAgain"] = _counts(
                self.delivered_again
            )
            doc["UnknownContent"] = self.unknown
        if self.salvaged:
            doc["Quarantined"] = [str(path) for path in self.quarantined]
        return doc


def examine(store: FileStore) -> Examination:
    """Read and authenticate everything; change nothing. KMS calls on this thread."""
    journal = store.journal
    payload_problems: dict[int, Problem] = {}
    for record in journal.scan():
        if record.segment in payload_problems:
            continue
        try:
            decode_record(record.payload)
        except CorruptRecordError as exc:
            name = journal.segment_path(record.segment).name
            payload_problems[record.segment] = Problem(
                "damaged",
                record.segment,
                f"journal segment {name} at offset {record.offset}: {exc.reason}",
            )
    check = journal.check
    check.problems.extend(payload_problems.values())
    set_aside = sorted(
        {p.segment for p in check.problems if p.kind in _SET_ASIDE and p.segment is not None}
        | set(check.orphans)
        | set(check.leftovers)
    )
    aside = set(set_aside)
    kept = [
        state
        for state in check.segments
        if state.number not in aside and not (state.torn is not None and state.torn.remove)
    ]
    everything, remaining = StateBuilder(), StateBuilder()
    if not check.intact:
        for record in journal.scan():
            try:
                entries = decode_record(record.payload)
            except CorruptRecordError:
                continue
            everything.apply(record.segment, entries)
            if record.segment not in aside:
                remaining.apply(record.segment, entries)
        journal.check = check
    before, after = everything.state(), remaining.state()
    return Examination(
        check,
        set_aside,
        kept,
        _difference(before, after),
        _difference(after, before),
        _unknown(check),
    )


def salvage(store: FileStore) -> Examination:
    """:func:`examine`, then set aside what cannot be kept and record the rest as the journal.

    Does nothing when the journal is intact. Afterwards the broker starts on what
    was kept.
    """
    found = examine(store)
    if found.intact:
        return found
    journal = store.journal
    found.quarantined = journal.quarantine(found.set_aside)
    journal.accept(found.kept)
    # The index checkpoint described the journal before: never start from it again.
    remove_quietly(store.checkpoint_path)
    found.salvaged = True
    return found


def _difference(a: RecoveredState, b: RecoveredState) -> RecoveredState:
    """What ``a`` holds that ``b`` does not."""
    in_b = {stored.message.message_id for stored in b.messages}
    subscriptions = {info.key for info in b.subscriptions}
    retained = {message.message_id for message in b.retained}
    destinations = {info.destination for info in b.destinations}
    return RecoveredState(
        [stored for stored in a.messages if stored.message.message_id not in in_b],
        [info for info in a.subscriptions if info.key not in subscriptions],
        [message for message in a.retained if message.message_id not in retained],
        {key: value for key, value in a.sessions.items() if key not in b.sessions},
        [info for info in a.destinations if info.destination not in destinations],
        [job for job in a.scheduled if job.job_id not in {j.job_id for j in b.scheduled}],
        {xid: ops for xid, ops in a.prepared.items() if xid not in b.prepared},
    )


def _counts(state: RecoveredState) -> dict[str, int]:
    return dict(sorted(Counter(str(s.message.destination) for s in state.messages).items()))


def _summary(state: RecoveredState) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "Messages": _counts(state),
        "Subscriptions": sorted(
            f"{info.client_id}:{info.name} ({info.destination})" for info in state.subscriptions
        ),
        "RetainedTopics": sorted(str(message.destination) for message in state.retained),
        "Sessions": sorted(state.sessions),
    }
    if state.destinations:
        summary["Destinations"] = sorted(str(info.destination) for info in state.destinations)
    if state.scheduled:
        summary["ScheduledJobs"] = len(state.scheduled)
    if state.prepared:
        summary["PreparedTransactions"] = len(state.prepared)
    return summary


def _unknown(check: JournalCheck) -> list[str]:
    out = []
    point = check.point
    expected = point.expected() if point is not None else {}
    for number in check.missing:
        out.append(
            f"{number:08d}.seg is missing: {expected[number].records} records of unknown "
            "content; messages they acknowledged may be delivered again"
        )
    for state in check.segments:
        if state.damage is not None:
            out.append(
                f"{state.path.name}: everything after offset {state.damage_offset} "
                f"(after record {state.records}) is unreadable"
            )
        elif point is not None and state.number == point.last.number:
            cut = point.last.records - state.records
            if cut > 0:
                out.append(
                    f"{state.path.name}: {cut} confirmed records were cut from its end; "
                    "their content is unknown"
                )
        elif state.number in expected:
            seal = expected[state.number]
            if seal.segment_id != state.segment_id:
                out.append(
                    f"{state.path.name} is another copy: the {seal.records} records the journal "
                    "recorded are of unknown content"
                )
            elif seal.records > state.records:
                out.append(
                    f"{state.path.name} is an older copy: {seal.records - state.records} of the "
                    f"{seal.records} records the journal recorded are of unknown content"
                )
    return out
