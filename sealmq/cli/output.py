"""Printing results as the AWS CLI does: JSON, 4-space indent, dates in ISO 8601."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["CliError", "aws_json", "print_json"]


class CliError(Exception):
    """A command failed; the message is printed as one line."""


def _convert(value: Any, name: str = "") -> Any:
    if isinstance(value, Mapping):
        return {str(k): _convert(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(v, name) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    # KMS sends dates as epoch seconds; the AWS CLI prints them as ISO 8601 with an offset.
    if name.endswith("Date") and isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value


def aws_json(response: Mapping[str, Any]) -> str:
    """``response`` as the AWS CLI's default JSON output shows it."""
    return json.dumps(_convert(response), indent=4)


def print_json(response: Mapping[str, Any] | None, out: TextIO | None = None) -> None:
    """Print a response; an empty one prints nothing, as the AWS CLI does."""
    if not response:
        return
    print(aws_json(response), file=out or sys.stdout)
