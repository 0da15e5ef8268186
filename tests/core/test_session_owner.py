"""A client id's session belongs to the user who created it (issue #8), in the core."""

from __future__ import annotations

import pytest

from sealmq.core.broker import OWNER_KEY_PREFIX, Broker, SubscribeOptions
from sealmq.core.errors import SessionOwnerError
from sealmq.core.model import Destination, DurableSubscriptionInfo
from sealmq.core.ports import AddSubscription
from sealmq.core.queues import Consumer, Entry
from sealmq.core.security import Principal
from sealmq.store.memory import MemoryStore

TOPIC = Destination.topic("events")


class Sink:
    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        pass


@pytest.mark.asyncio
async def test_a_durable_subscription_binds_its_client_id_to_its_user() -> None:
    store = MemoryStore()
    broker = Broker(store)
    broker.start()
    alice = broker.connect(client_id="app-1", principal=Principal("alice"))
    alice.subscribe("d", TOPIC, Sink(), SubscribeOptions(durable_name="audit"))
    alice.close()
    written = broker.pending_write()
    assert written is not None
    await written
    assert store.snapshot().sessions[OWNER_KEY_PREFIX + "app-1"] == b"alice"

    with pytest.raises(SessionOwnerError, match="another user"):
        broker.connect(client_id="app-1", principal=Principal("bob"), takeover=True)
    assert broker.durable_subscriptions("app-1")  # untouched
    again = broker.connect(client_id="app-1", principal=Principal("alice"), takeover=True)
    again.close()
    await broker.close()


@pytest.mark.asyncio
async def test_a_live_connection_is_not_taken_over_by_another_user() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    alice = broker.connect(client_id="live", principal=Principal("alice"), takeover=True)
    with pytest.raises(SessionOwnerError):
        broker.connect(client_id="live", principal=Principal("bob"), takeover=True)
    assert not alice.closed
    assert (
        broker.connect(client_id="live", principal=Principal("alice"), takeover=True) is not alice
    )
    assert alice.closed
    await broker.close()


@pytest.mark.asyncio
async def test_a_session_stored_without_an_owner_is_taken_by_its_next_user() -> None:
    store = MemoryStore()
    # As a journal written before owners were recorded: a durable subscription, no owner.
    await store.write([AddSubscription(DurableSubscriptionInfo("old", "audit", TOPIC))])
    broker = Broker(store)
    broker.start()
    bob = broker.connect(client_id="old", principal=Principal("bob"))
    bob.close()
    assert broker.session_owner("old") == "bob"
    with pytest.raises(SessionOwnerError):
        broker.connect(client_id="old", principal=Principal("alice"))
    await broker.close()
    assert store.snapshot().sessions[OWNER_KEY_PREFIX + "old"] == b"bob"


@pytest.mark.asyncio
async def test_the_owner_is_released_with_the_last_durable_subscription() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    alice = broker.connect(client_id="temp-owner", principal=Principal("alice"))
    alice.subscribe("d", TOPIC, Sink(), SubscribeOptions(durable_name="audit"))
    alice.unsubscribe("d")
    alice.remove_durable("audit")
    broker.release_session("temp-owner")
    alice.close()
    assert broker.session_owner("temp-owner") is None
    broker.connect(client_id="temp-owner", principal=Principal("bob")).close()
    await broker.close()


@pytest.mark.asyncio
async def test_the_owner_stays_while_another_protocol_keeps_session_state() -> None:
    broker = Broker(MemoryStore())
    broker.start()
    alice = broker.connect(client_id="both", principal=Principal("alice"))
    alice.subscribe("d", TOPIC, Sink(), SubscribeOptions(durable_name="audit"))
    broker.set_session_state("mqtt:both", b"{}")  # an MQTT session of the same client id
    alice.unsubscribe("d")
    alice.remove_durable("audit")
    broker.release_session("both")
    alice.close()
    assert broker.session_owner("both") == "alice"
    broker.set_session_state("mqtt:both", None)
    broker.release_session("both")
    assert broker.session_owner("both") is None
    await broker.close()
