"""``sealmq store verify`` and ``sealmq store salvage --yes``: the journal, with the broker stopped.

- ``store verify``: reads and authenticates every segment and record, prints a
  report as JSON (what is damaged, missing or out of place, and what a salvage
  would set aside and lose); exits 0 if the journal is intact, 1 if not.
- ``store salvage --yes``: moves damaged and orphaned segments into
  ``<data_dir>/journal/quarantine/`` (still encrypted), records the rest as the
  journal so that the broker starts on it, and prints what was lost.

Destination names and client ids are printed here, for the operator's terminal;
they are never written to a log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sealmq.cli.output import CliError, print_json
from sealmq.config import Settings
from sealmq.control.storecheck import salvage_store, verify_store

__all__ = ["add_store_commands", "run_store"]


def add_store_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    store = commands.add_parser(
        "store", help="check or salvage the journal (the broker must be stopped)"
    )
    sub = store.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")
    p = sub.add_parser(
        "verify", help="read and authenticate everything; exit 1 unless the journal is intact"
    )
    common(p)
    p = sub.add_parser(
        "salvage",
        help="move damaged or orphaned segments to journal/quarantine/ and start on the rest",
    )
    common(p)
    p.add_argument("--yes", action="store_true", help="really set segments aside (required)")


def run_store(settings: Settings, args: argparse.Namespace) -> int:
    """Run the command; its exit status."""
    if args.store_command == "verify":
        intact, report = verify_store(settings)
        print_json(report)
        if not intact:
            problems = report["Problems"]
            print(
                f"sealmq: the journal in {settings.data_dir} is not intact "
                f"({len(problems)} problems, the first: {problems[0]}); "
                "`sealmq store salvage --yes` sets aside what the report lists",
                file=sys.stderr,
            )
        return 0 if intact else 1
    if args.store_command == "salvage":
        if not args.yes:
            raise CliError(
                f"salvaging the journal in {settings.data_dir} gives up what cannot be "
                "recovered (run `sealmq store verify` to see what); add --yes to do it"
            )
        print_json(salvage_store(settings))
        return 0
    raise CliError(f"unknown command {args.store_command}")  # pragma: no cover
