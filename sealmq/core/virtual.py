"""Virtual topics (ActiveMQ's ``virtualTopic`` interceptor): a topic whose messages also
reach queues, one per consuming application, with competing consumers on each.

A message sent to topic ``VirtualTopic.Orders`` reaches every queue named
``Consumer.<application>.VirtualTopic.Orders`` that exists when it is sent, as well as
the topic's own subscribers. Each such queue is an ordinary queue: persistent messages
are stored for it, its consumers compete, it has its own policy and dead letters. A
queue made after a message was sent does not receive it (as in ActiveMQ).

``name`` (topics that are virtual) and ``prefix`` (what comes before the topic's name in
a consumer queue's name) take ActiveMQ wildcards; the prefix may use ``*`` (one level)
but not ``>``, since the topic's own name follows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealmq.core.wildcards import matches

__all__ = ["ACTIVEMQ_VIRTUAL_TOPICS", "DEFAULT_NAME", "DEFAULT_PREFIX", "VirtualTopics"]

#: ActiveMQ's defaults.
DEFAULT_NAME = "VirtualTopic.>"
DEFAULT_PREFIX = "Consumer.*."


@dataclass(frozen=True, slots=True)
class VirtualTopics:
    name: str = DEFAULT_NAME
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.endswith(".") or self.prefix == ".":
            raise ValueError(f"a virtual topic prefix ends with '.': {self.prefix!r}")
        if ">" in self.prefix.split("."):
            raise ValueError(f"a virtual topic prefix cannot use '>': {self.prefix!r}")

    def topic_of(self, queue: str) -> str | None:
        """The virtual topic whose messages queue ``queue`` receives, or None."""
        levels = self.prefix[:-1].split(".")
        parts = queue.split(".")
        if len(parts) <= len(levels):
            return None
        for want, have in zip(levels, parts, strict=False):
            if want != "*" and want != have:
                return None
        topic = ".".join(parts[len(levels) :])
        if "*" in parts or ">" in parts or not matches(self.name, topic):
            return None
        return topic


#: ActiveMQ's default virtual topics, on unless configured otherwise.
ACTIVEMQ_VIRTUAL_TOPICS = VirtualTopics()
