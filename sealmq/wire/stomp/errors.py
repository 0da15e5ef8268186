"""The one error the STOMP codec raises."""

from __future__ import annotations

__all__ = ["StompError"]


class StompError(Exception):
    """The peer broke the STOMP protocol, or a frame cannot be put on the wire.

    ``message`` is short and safe to send back to the peer as the ``message``
    header of an ERROR frame: it names the problem and a limit at most, never
    internal detail.  Raised by ``receive_data``/``receive_eof`` (the codec is
    dead afterwards: send the ERROR frame and close) and by ``send`` or
    ``send_message`` when a header cannot be represented in the negotiated
    version (the codec stays usable; nothing was queued).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
