"""Scheduled delivery: ActiveMQ's ``AMQ_SCHEDULED_*`` message properties.

A message sent with any of them is held by the scheduler instead of being routed:

- ``AMQ_SCHEDULED_DELAY`` (ms): wait this long before delivering;
- ``AMQ_SCHEDULED_PERIOD`` (ms) and ``AMQ_SCHEDULED_REPEAT`` (n): deliver it n more
  times, this far apart;
- ``AMQ_SCHEDULED_CRON`` (five-field cron, UTC, ``core/cron.py``): deliver it at every
  time the expression names, each time followed by the repeats above (after the
  delay), for as long as the job exists.

Properties may be numbers or, as STOMP and MQTT carry them, strings of digits; a
value that is neither, or negative, is refused at send with :class:`ScheduleError`.

Every job is stored (``AddScheduled``, the message encrypted like any other) whether
the message is persistent or not, as ActiveMQ's job store does, so a restart keeps
it and fires what fell due meanwhile at once. A firing routes a copy under a new
message id, carrying the job's id in ``scheduledJobId`` and none of the scheduling
properties, in one store record with the job's next state (or its removal). The
message's own ``persistent`` flag then says whether that copy is stored for its
queue.

ActiveMQ runs this only with ``schedulerSupport="true"``; sealmq always does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sealmq.core.clock import Timer
from sealmq.core.consumers import Entry
from sealmq.core.errors import BrokerError
from sealmq.core.model import SCHEDULING_PROPERTIES, Message, PropertyValue
from sealmq.core.ports import (
    AddMessage,
    AddScheduled,
    Op,
    RemoveMessage,
    RemoveScheduled,
    ScheduledJob,
)

if TYPE_CHECKING:
    from sealmq.core.broker import Broker

__all__ = ["JOB_ID_PROPERTY", "SCHEDULE_PROPERTIES", "ScheduleError", "Scheduler"]

log = logging.getLogger("sealmq.core")

DELAY = "AMQ_SCHEDULED_DELAY"
PERIOD = "AMQ_SCHEDULED_PERIOD"
REPEAT = "AMQ_SCHEDULED_REPEAT"
CRON = "AMQ_SCHEDULED_CRON"
SCHEDULE_PROPERTIES = SCHEDULING_PROPERTIES
#: Set on each delivered copy: the job it came from (ActiveMQ's name).
JOB_ID_PROPERTY = "scheduledJobId"
#: Longest delay or period accepted (ms): about 100 years, so arithmetic stays sane.
MAX_MILLIS = 100 * 366 * 24 * 3600 * 1000


class ScheduleError(BrokerError):
    """A message's scheduling properties do not make a schedule."""


@dataclasses.dataclass(slots=True)
class _Schedule:
    due: int  # ms since the epoch
    delay: int = 0
    period: int = 0
    repeat: int = 0
    #: Repeats still to come in the current series.
    left: int = 0
    cron: str | None = None
    #: A delayed redelivery rather than a scheduled send: the owner (a queue's or a
    #: durable subscription's key) the message goes back to, and its redelivery count.
    owner: str | None = None
    redeliveries: int = 0

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self) | {"v": 1}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> _Schedule:
        doc = json.loads(data)
        doc.pop("v", None)
        return cls(**doc)


def _millis(name: str, value: PropertyValue) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 0 <= value <= MAX_MILLIS:
        raise ScheduleError(f"{name} must be a whole number from 0 to {MAX_MILLIS}, got {value!r}")
    return value


class Scheduler:
    """The broker's scheduled messages: their timers, their jobs in the store."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.jobs: dict[str, ScheduledJob] = {}
        self._timers: dict[str, Timer] = {}
        self._ids = 0

    def schedule_of(self, message: Message, now_ms: int) -> _Schedule | None:
        """The schedule ``message`` asks for, or None if it asks for none."""
        props = message.properties
        if props.keys().isdisjoint(SCHEDULE_PROPERTIES):
            return None
        delay = _millis(DELAY, props[DELAY]) if DELAY in props else 0
        period = _millis(PERIOD, props[PERIOD]) if PERIOD in props else 0
        repeat = _millis(REPEAT, props[REPEAT]) if REPEAT in props else 0
        cron = props.get(CRON)
        if cron is None:
            return _Schedule(now_ms + delay, delay, period, repeat, repeat)
        if not isinstance(cron, str):
            raise ScheduleError(f"{CRON} must be a cron expression, got {cron!r}")
        from sealmq.core.cron import CronError, parse_cron

        try:
            first = parse_cron(cron).next_after(now_ms)
        except CronError as exc:
            raise ScheduleError(f"{CRON} {cron!r}: {exc}") from None
        return _Schedule(first + delay, delay, period, repeat, repeat, cron)

    def check(self, message: Message) -> None:
        """Refuse bad scheduling properties now (a transactional send, before COMMIT)."""
        self.schedule_of(message, self.broker.now_ms())

    def hold(self, message: Message) -> list[Op] | None:
        """The store ops that hold ``message`` as a new job, or None if it is not scheduled.

        The job is armed at once; the caller writes the ops (with whatever else its
        record holds).
        """
        schedule = self.schedule_of(message, self.broker.now_ms())
        if schedule is None:
            return None
        self._ids += 1
        job = ScheduledJob(f"{message.message_id}:{self._ids}", message, schedule.encode())
        self._arm(job, schedule)
        return [AddScheduled(job)]

    def hold_redelivery(
        self, message: Message, owner: str, redeliveries: int, due: int
    ) -> list[Op]:
        """The store ops that take ``message`` from ``owner`` until ``due`` (ms) and give
        it back then with ``redeliveries``: a redelivery delay that outlives a restart."""
        self._ids += 1
        schedule = _Schedule(due, owner=owner, redeliveries=redeliveries)
        job = ScheduledJob(
            f"redelivery:{message.message_id}:{self._ids}", message, schedule.encode()
        )
        self._arm(job, schedule)
        return [RemoveMessage(message.message_id, owner), AddScheduled(job)]

    def recover(self, jobs: Iterable[ScheduledJob]) -> None:
        """Arm the jobs the store kept; those that fell due while stopped fire at once."""
        for job in jobs:
            try:
                schedule = _Schedule.decode(job.schedule)
            except (ValueError, TypeError) as exc:
                # Written by this module, so only a newer broker's format gets here.
                raise BrokerError(f"scheduled job {job.job_id}: unreadable schedule") from exc
            self._arm(job, schedule)

    def remove(self, job_id: str) -> bool:
        """Forget a job (it is not delivered again); False if there is none."""
        job = self.jobs.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        if job is None:
            return False
        self.broker._write([RemoveScheduled(job_id)])
        return True

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self, job: ScheduledJob, schedule: _Schedule) -> None:
        self.jobs[job.job_id] = job
        wait = max(0.0, (schedule.due - self.broker.now_ms()) / 1000)
        self._timers[job.job_id] = self.broker.clock.call_later(
            wait, lambda: self._fire(job.job_id, schedule)
        )

    def _give_back(self, job: ScheduledJob, owner: str, redeliveries: int) -> None:
        """A delayed redelivery fell due: the message goes back to the front of its
        queue, stored for its owner again, in one record with the job's removal."""
        del self.jobs[job.job_id]
        broker = self.broker
        ops: list[Op] = [RemoveScheduled(job.job_id)]
        queue = broker._queue_for_owner(owner)
        if queue is None:  # the queue or subscription went away meanwhile
            broker._write(ops)
            return
        message = _redelivered(job.message, redeliveries)
        ops.append(AddMessage(message, (owner,)))
        broker._write(ops)
        broker._requeue(queue, [Entry(message, queue, redeliveries)])

    def _fire(self, job_id: str, schedule: _Schedule) -> None:
        self._timers.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is None:
            return
        broker = self.broker
        if schedule.owner is not None:
            self._give_back(job, schedule.owner, schedule.redeliveries)
            return
        now = broker.now_ms()
        copy = _delivered_copy(job, broker.new_message_id())
        ops: list[Op] = []
        targets: list[Any] = []
        try:
            ops, targets = broker._route(copy)
        except BrokerError as exc:  # its destination went away (a temporary one)
            log.warning("scheduled job %s dropped: %s", job_id, exc)
            schedule = dataclasses.replace(schedule, left=0, cron=None)
        following = _following(schedule, now)
        if following is None:
            del self.jobs[job_id]
            ops.append(RemoveScheduled(job_id))
        else:
            job = dataclasses.replace(job, schedule=following.encode())
            ops.append(AddScheduled(job))
            self._arm(job, following)
        broker._write(ops)
        for queue, entry in targets:
            queue.enqueue(entry)
            queue.wake()


def _following(schedule: _Schedule, now_ms: int) -> _Schedule | None:
    """The job's next state after a firing at ``now_ms``, or None when it is done."""
    if schedule.left > 0:
        return dataclasses.replace(schedule, due=now_ms + schedule.period, left=schedule.left - 1)
    if schedule.cron is None:
        return None
    from sealmq.core.cron import parse_cron

    due = parse_cron(schedule.cron).next_after(now_ms) + schedule.delay
    return dataclasses.replace(schedule, due=due, left=schedule.repeat)


def _delivered_copy(job: ScheduledJob, message_id: str) -> Message:
    """What a firing routes: the job's message under a new id, marked with the job."""
    properties = {k: v for k, v in job.message.properties.items() if k not in SCHEDULE_PROPERTIES}
    properties[JOB_ID_PROPERTY] = job.job_id
    return dataclasses.replace(job.message, message_id=message_id, properties=properties)


def _redelivered(message: Message, redeliveries: int) -> Message:
    return dataclasses.replace(message, redelivery_count=redeliveries)
