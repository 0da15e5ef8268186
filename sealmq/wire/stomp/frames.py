"""What the STOMP codec hands out and takes in: frames and heart-beats."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Frame", "Heartbeat", "new_frame"]

# Header values that must never reach a log line through repr().
_SECRET_HEADERS = frozenset({"passcode"})
_REPR_BODY_BYTES = 64


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """One STOMP frame.

    ``headers`` are in wire order with repeats kept and escapes already undone;
    use ``get``/``header_dict`` to read them the way STOMP 1.2 says (the first
    occurrence of a name wins).
    """

    command: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name``, or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_dict(self) -> dict[str, str]:
        """Return the headers as a dict, keeping the first value of a repeated name."""
        result: dict[str, str] = {}
        for key, value in self.headers:
            if key not in result:
                result[key] = value
        return result

    def __repr__(self) -> str:
        # Frames end up in debug logs: hide credentials and cap the body.
        shown = tuple((k, "********" if k in _SECRET_HEADERS else v) for k, v in self.headers)
        body = self.body
        if len(body) > _REPR_BODY_BYTES:
            body_text = f"{body[:_REPR_BODY_BYTES]!r}... ({len(body)} bytes)"
        else:
            body_text = repr(body)
        return f"Frame(command={self.command!r}, headers={shown!r}, body={body_text})"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One EOL received between frames: the peer is alive (STOMP 1.1 heart-beating)."""


# The slot descriptors: setting through them skips the frozen __setattr__.
_SET_COMMAND = vars(Frame)["command"].__set__
_SET_HEADERS = vars(Frame)["headers"].__set__
_SET_BODY = vars(Frame)["body"].__set__


def new_frame(command: str, headers: tuple[tuple[str, str], ...], body: bytes) -> Frame:
    """``Frame(command, headers, body)`` for the codec's hot path: the same frozen frame,
    made through its slots (a frozen dataclass's ``__init__`` costs five times as much)."""
    frame: Frame = object.__new__(Frame)
    _SET_COMMAND(frame, command)
    _SET_HEADERS(frame, headers)
    _SET_BODY(frame, body)
    return frame
