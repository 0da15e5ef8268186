"""How the wss listener picks the adapter of a WebSocket upgrade."""

from __future__ import annotations

import pytest
from websockets.exceptions import NegotiationError

from sealmq.net.websocket import SUBPROTOCOLS, select_protocol


@pytest.mark.parametrize(
    ("path", "offered", "expected"),
    [
        ("/", ["mqtt"], ("mqtt", "mqtt")),
        ("/", ["mqttv3.1"], ("mqtt", "mqttv3.1")),
        ("/", ["v10.stomp", "v11.stomp", "v12.stomp"], ("stomp", "v12.stomp")),
        ("/", ["chat", "stomp"], ("stomp", "stomp")),  # unknown ones are passed over
        ("/mqtt", ["v11.stomp"], ("stomp", "v11.stomp")),  # the subprotocol decides
        ("/mqtt", [], ("mqtt", None)),
        ("/stomp?x=1", [], ("stomp", None)),
    ],
)
def test_subprotocol_then_path(
    path: str, offered: list[str], expected: tuple[str, str | None]
) -> None:
    assert select_protocol(path, offered) == expected


def test_every_subprotocol_names_a_served_adapter() -> None:
    assert set(SUBPROTOCOLS.values()) == {"mqtt", "stomp"}


@pytest.mark.parametrize(
    ("path", "offered", "says"),
    [
        ("/", ["amqp"], "unsupported subprotocol amqp; this endpoint speaks mqtt"),
        ("/", [], "or connect to /mqtt or /stomp"),
        ("/MQTT", [], "no subprotocol offered"),
    ],
)
def test_refusals_say_what_is_served(path: str, offered: list[str], says: str) -> None:
    with pytest.raises(NegotiationError, match=says):
        select_protocol(path, offered)
