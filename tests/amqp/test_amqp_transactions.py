"""AMQP local transactions through the coordinator, with Qpid Proton's reactor
``Container`` and its transaction API: transactional sends appear only at a commit
and never after an abort; a transactional accept consumes only at the commit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from proton import Message, Timeout
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container

from tests.amqp.clients import AmqpClients, client_domain
from tests.support import PASSWORD, TIMEOUT, USER


class _Scripted(MessagingHandler, TransactionHandler):  # type: ignore[misc]
    """A client whose steps run in the reactor; :func:`run` waits for it, bounded."""

    def __init__(self, amqp: AmqpClients) -> None:
        super().__init__(prefetch=0, auto_accept=False)
        self.amqp = amqp
        self.outcome: str | None = None
        self.conn: Any = None
        self.txn: Any = None

    def connect(self, container: Container) -> Any:
        self.conn = container.connect(
            self.amqp.url,
            ssl_domain=client_domain(self.amqp.ca_file),
            user=USER,
            password=PASSWORD,
            allowed_mechs="PLAIN",
            sasl_enabled=True,
        )
        return self.conn

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.conn.close()

    def on_transaction_committed(self, event: Any) -> None:
        self.finish("committed")

    def on_transaction_aborted(self, event: Any) -> None:
        self.finish("aborted")

    def on_transaction_commit_failed(self, event: Any) -> None:
        self.finish("commit failed")

    def on_transaction_declare_failed(self, event: Any) -> None:
        self.finish("declare failed")


class TxSender(_Scripted):
    def __init__(self, amqp: AmqpClients, address: str, bodies: list[str], commit: bool) -> None:
        super().__init__(amqp)
        self.address, self.bodies, self.commit = address, list(bodies), commit
        self.sender: Any = None
        self.discharged = False

    def on_start(self, event: Any) -> None:
        conn = self.connect(event.container)
        self.sender = event.container.create_sender(conn, self.address)
        event.container.declare_transaction(conn, handler=self)

    def on_transaction_declared(self, event: Any) -> None:
        self.txn = event.transaction
        self.send()

    def on_sendable(self, event: Any) -> None:
        self.send()

    def send(self) -> None:
        if self.txn is None or self.discharged:
            return
        while self.bodies and self.sender.credit:
            self.txn.send(self.sender, Message(body=self.bodies.pop(0), durable=True))
        if not self.bodies:
            self.discharged = True
            if self.commit:
                self.txn.commit()
            else:
                self.txn.abort()


class TxAcker(_Scripted):
    """Receives one message and accepts it in a transaction, then commits or aborts."""

    def __init__(self, amqp: AmqpClients, address: str, commit: bool) -> None:
        super().__init__(amqp)
        self.address, self.commit = address, commit
        self.body: str | None = None

    def on_start(self, event: Any) -> None:
        conn = self.connect(event.container)
        event.container.declare_transaction(conn, handler=self)
        self.receiver = event.container.create_receiver(conn, self.address)

    def on_transaction_declared(self, event: Any) -> None:
        self.txn = event.transaction
        self.receiver.flow(1)

    def on_message(self, event: Any) -> None:
        self.body = event.message.body
        self.txn.accept(event.delivery)
        if self.commit:
            self.txn.commit()
        else:
            self.txn.abort()


def run(handler: _Scripted) -> str | None:
    container = Container(handler)
    thread = threading.Thread(target=container.run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        container.stop()
        thread.join(TIMEOUT)
        pytest.fail(f"the transaction did not finish in time ({handler.outcome})")
    return handler.outcome


def drain(amqp: AmqpClients, address: str, wait: float = 0.5) -> list[str]:
    conn = amqp.connect()
    receiver = conn.create_receiver(address, credit=10)
    got = []
    while True:
        try:
            got.append(receiver.receive(timeout=wait).body)
        except Timeout:
            break
        receiver.accept()
    conn.close()
    return got


def test_sends_in_a_committed_transaction_arrive_and_in_an_aborted_one_never(
    amqp: AmqpClients,
) -> None:
    assert run(TxSender(amqp, "queue://tx.sends", ["a1", "a2"], commit=False)) == "aborted"
    assert run(TxSender(amqp, "queue://tx.sends", ["c1", "c2", "c3"], commit=True)) == "committed"
    assert drain(amqp, "queue://tx.sends") == ["c1", "c2", "c3"]


def test_an_accept_in_a_transaction_consumes_only_at_its_commit(amqp: AmqpClients) -> None:
    conn = amqp.connect()
    conn.create_sender("queue://tx.acks").send(Message(body="once", durable=True))
    conn.close()
    acker = TxAcker(amqp, "queue://tx.acks", commit=False)
    assert run(acker) == "aborted" and acker.body == "once"
    acker = TxAcker(amqp, "queue://tx.acks", commit=True)
    assert run(acker) == "committed" and acker.body == "once"  # the abort gave it back
    assert drain(amqp, "queue://tx.acks") == []


class ManyTransactions(_Scripted):
    """Declares and commits ``count`` empty transactions, one after another, on the one
    coordinator link Proton keeps per connection."""

    def __init__(self, amqp: AmqpClients, count: int) -> None:
        super().__init__(amqp)
        self.count, self.done = count, 0

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.container.declare_transaction(self.connect(event.container), handler=self)

    def on_transaction_declared(self, event: Any) -> None:
        event.transaction.commit()

    def on_transaction_committed(self, event: Any) -> None:
        self.done += 1
        if self.done == self.count:
            self.finish("committed")
        else:
            self.container.declare_transaction(self.conn, handler=self)


def test_the_coordinator_keeps_granting_credit(amqp: AmqpClients) -> None:
    # A declare and a discharge each take one credit: 300 transactions need 600, more
    # than the first grant, so the broker must top the coordinator link up.
    many = ManyTransactions(amqp, 300)
    assert run(many) == "committed" and many.done == 300
