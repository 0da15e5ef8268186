"""``sealmq status`` and ``sealmq broker ...``: the broker's lifecycle from the command line.

- ``status``: the broker's state (``RUNNING``, ``CRITICAL_ACTION_REQUIRED`` with
  its actions required, ... or ``STOPPED``) and its key, as JSON.
- ``broker restore-key-access``: a new grant for the broker's storage principal on
  its key, after the old one was revoked (the broker serves again within one
  retry period).
- ``broker rotate-data-keys``: new segments under fresh data keys and live records
  rewritten; a running broker does it while serving (asked through a request file
  and SIGUSR1), a stopped one is rotated by the command itself.
- ``broker delete --yes``: crypto-shreds (grants retired, per-broker key destroyed
  in the key service), then removes the broker's files. The broker must be stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from sealmq.cli.output import CliError, print_json
from sealmq.config import Settings
from sealmq.control import operations

__all__ = ["add_broker_commands", "run_broker", "run_status"]


def add_broker_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    status = commands.add_parser("status", help="print the broker's state and key as JSON")
    common(status)
    broker = commands.add_parser("broker", help="broker lifecycle: keys, rotation, deletion")
    sub = broker.add_subparsers(dest="broker_command", required=True, metavar="BROKER_COMMAND")
    p = sub.add_parser("describe", help="the same as `sealmq status`")
    common(p)
    p = sub.add_parser(
        "restore-key-access", help="grant the broker's storage principal its key again"
    )
    common(p)
    p = sub.add_parser(
        "rotate-data-keys",
        help="fresh data keys for new segments; live records rewritten (broker keeps serving)",
    )
    common(p)
    p.add_argument(
        "--timeout",
        type=float,
        default=operations.ROTATION_TIMEOUT_SECONDS,
        help="seconds to wait for a running broker to finish (default %(default)g); "
        "the command also stops waiting, with an error, if the broker stops",
    )
    p = sub.add_parser(
        "delete", help="crypto-shred the stopped broker and remove its files (irreversible)"
    )
    common(p)
    p.add_argument("--yes", action="store_true", help="really delete (required)")


def _progress(text: str) -> None:
    """What a command waits for, on stderr (stdout holds only the JSON result)."""
    print(f"sealmq: {text}", file=sys.stderr, flush=True)


def run_status(settings: Settings) -> None:
    print_json(operations.broker_status(settings))


def run_broker(settings: Settings, args: argparse.Namespace) -> None:
    command = args.broker_command
    result: dict[str, Any]
    if command == "describe":
        result = operations.broker_status(settings)
    elif command == "restore-key-access":
        result = operations.restore_key_access(settings)
    elif command == "rotate-data-keys":
        if not args.timeout > 0:
            raise CliError(f"--timeout must be a positive number of seconds, not {args.timeout}")
        result = asyncio.run(
            operations.rotate_data_keys(settings, timeout=args.timeout, progress=_progress)
        )
    elif command == "delete":
        if not args.yes:
            raise CliError(
                f"deleting broker data in {settings.data_dir} destroys its key and every "
                "message for good; add --yes to do it"
            )
        result = operations.delete_broker(settings)
    else:  # pragma: no cover - argparse allows only the commands above
        raise CliError(f"unknown command {command}")
    print_json(result)
