"""Topic subscriptions: a pattern and the queue holding what it matched."""

from __future__ import annotations

from sealmq.core.model import DurableSubscriptionInfo
from sealmq.core.queues import MessageFilter, MessageQueue

__all__ = ["TopicSubscription"]


class TopicSubscription:
    """A topic subscription: its pattern and the queue that holds its messages."""

    __slots__ = ("connection_id", "info", "no_local", "pattern", "queue", "selector", "shared_key")

    def __init__(
        self,
        pattern: str,
        queue: MessageQueue,
        *,
        info: DurableSubscriptionInfo | None = None,
        no_local: bool = False,
        connection_id: str | None = None,
        selector: MessageFilter | None = None,
    ) -> None:
        self.pattern = pattern
        self.queue = queue
        self.info = info
        self.no_local = no_local
        #: The connection consuming now (None for an inactive durable subscription).
        self.connection_id = connection_id
        #: The compiled JMS selector: only what it selects is routed to the subscription.
        self.selector = selector
        #: Set for a shared subscription (MQTT ``$share/<group>/<filter>``): its key.
        self.shared_key: str | None = None
