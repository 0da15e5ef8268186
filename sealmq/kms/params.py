"""Reading request parameters the way KMS validates them, and paging list results.

Every reader raises :class:`~sealmq.kms.errors.KmsError` with KMS's wording
(``1 validation error detected: Value ... at 'keyId' failed to satisfy
constraint: ...``), so a bad request never escapes as a Python exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sealmq.kms.errors import KmsError

__all__ = [
    "Request",
    "opt_bool",
    "opt_context",
    "opt_int",
    "opt_str",
    "opt_str_list",
    "page",
    "req_blob",
    "req_str",
]

Request = Mapping[str, Any]
_T = TypeVar("_T")


def _field(name: str) -> str:
    return name[:1].lower() + name[1:]


def _invalid(value: object, name: str, constraint: str) -> KmsError:
    shown = "" if value is None else str(value)[:256]
    return KmsError(
        "ValidationException",
        f"1 validation error detected: Value '{shown}' at '{_field(name)}' "
        f"failed to satisfy constraint: {constraint}",
    )


def _missing(name: str) -> KmsError:
    return KmsError(
        "ValidationException",
        f"1 validation error detected: Value null at '{_field(name)}' "
        "failed to satisfy constraint: Member must not be null",
    )


def opt_str(req: Request, name: str, *, min_len: int = 1, max_len: int = 2048) -> str | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KmsError("SerializationException", f"'{name}' must be a string")
    if len(value) < min_len:
        raise _invalid(value, name, f"Member must have length greater than or equal to {min_len}")
    if len(value) > max_len:
        raise _invalid(value, name, f"Member must have length less than or equal to {max_len}")
    return value


def req_str(req: Request, name: str, *, min_len: int = 1, max_len: int = 2048) -> str:
    value = opt_str(req, name, min_len=min_len, max_len=max_len)
    if value is None:
        raise _missing(name)
    return value


def opt_int(req: Request, name: str, low: int, high: int) -> int | None:
    value = req.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise KmsError("SerializationException", f"'{name}' must be an integer")
    if value < low:
        raise _invalid(value, name, f"Member must have value greater than or equal to {low}")
    if value > high:
        raise _invalid(value, name, f"Member must have value less than or equal to {high}")
    return value


def opt_bool(req: Request, name: str) -> bool:
    value = req.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise KmsError("SerializationException", f"'{name}' must be a boolean")
    return value


def req_blob(req: Request, name: str, *, max_len: int) -> bytes:
    value = req.get(name)
    if value is None:
        raise _missing(name)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise KmsError("SerializationException", f"'{name}' must be binary")
    data = bytes(value)
    if not data:
        raise _invalid("", name, "Member must have length greater than or equal to 1")
    if len(data) > max_len:
        raise _invalid(
            f"<{len(data)} bytes>", name, f"Member must have length less than or equal to {max_len}"
        )
    return data


def opt_context(req: Request, name: str) -> dict[str, str]:
    value = req.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise KmsError("SerializationException", f"'{name}' must map strings to strings")
    return dict(value)


def opt_str_list(req: Request, name: str, *, max_items: int = 1000) -> list[str] | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KmsError("SerializationException", f"'{name}' must be a list of strings")
    if len(value) > max_items:
        raise _invalid(value, name, f"Member must have length less than or equal to {max_items}")
    return list(value)


def page(
    req: Request, items: Sequence[_T], *, max_limit: int = 1000, default_limit: int = 100
) -> tuple[list[_T], dict[str, Any]]:
    """One page of ``items`` per ``Limit`` and ``Marker``, and the paging fields to return."""
    limit = opt_int(req, "Limit", 1, max_limit) or default_limit
    marker = opt_str(req, "Marker", max_len=1024)
    start = 0
    if marker is not None:
        if not marker.startswith("m") or not marker[1:].isdigit():
            raise KmsError("InvalidMarkerException", "The marker is not valid.")
        start = int(marker[1:])
        if start > len(items):
            raise KmsError("InvalidMarkerException", "The marker is not valid.")
    end = start + limit
    chunk = list(items[start:end])
    if end < len(items):
        return chunk, {"Truncated": True, "NextMarker": f"m{end}"}
    return chunk, {"Truncated": False}
