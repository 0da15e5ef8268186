"""The ``sealmq`` command.

``sealmq serve`` runs the broker; ``sealmq status`` and ``sealmq broker ...``
manage its lifecycle (``sealmq.cli.broker``); ``sealmq kms ...`` manages keys in
the embedded key service (``sealmq.cli.kms``); ``sealmq store verify|salvage``
check the journal of a stopped broker (``sealmq.cli.store``); ``sealmq user ...``
manages users (``sealmq.cli.users``). Every command takes ``--config``
and ``--data-dir``. A failure prints one line on stderr and exits non-zero: 2 for
a configuration refused (a bad file, or a key other than the broker's), 1 for
anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from sealmq.cli.output import CliError
from sealmq.config import ConfigError, Settings, load_settings
from sealmq.control.keys import BrokerKeyError
from sealmq.control.operations import NoBrokerError
from sealmq.control.requests import RequestTimeoutError
from sealmq.control.state import BrokerRunningError
from sealmq.control.supervisor import BrokerNotServingError
from sealmq.control.users import UserError
from sealmq.kms.errors import KmsError
from sealmq.kms.keystore import KeystoreError
from sealmq.store.errors import StoreError

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_FAILURE = 1

#: Failures that are reported as one line (no traceback).
_EXPECTED = (
    OSError,
    StoreError,
    KmsError,
    KeystoreError,
    CliError,
    NoBrokerError,
    BrokerRunningError,
    BrokerNotServingError,
    RequestTimeoutError,
    UserError,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $SEALMQ_CONFIG, else built-in defaults)",
    )
    parser.add_argument("--data-dir", type=Path, help="data folder (overrides the config file)")


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, sized without ``shutil``.

    argparse's own formatter imports ``shutil`` (and with it ``bz2`` and ``lzma``) to
    read the terminal width, and it is made for every ``add_argument``: ~0.4 MiB that
    would stay resident in the broker for nothing.
    """

    def __init__(self, prog: str) -> None:
        width = 80
        with contextlib.suppress(ValueError):
            width = int(os.environ.get("COLUMNS", "0")) or width
        if "COLUMNS" not in os.environ and sys.__stdout__ is not None:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                width = os.get_terminal_size(sys.__stdout__.fileno()).columns or width
        super().__init__(prog, width=width - 2)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`_Formatter`; its subcommands' parsers are too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    """The command line's parser; for ``serve``, one that knows only ``serve``.

    The other commands' modules (key service, store salvage, broker control) are
    imported only to run or describe them, so the broker does not keep them resident.
    """
    parser = _Parser(prog="sealmq", description="An encrypted-everywhere message broker.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the broker")
    _common(serve)
    if argv[:1] != ["serve"]:
        from sealmq.cli.broker import add_broker_commands
        from sealmq.cli.kms import add_kms_commands
        from sealmq.cli.store import add_store_commands
        from sealmq.cli.users import add_user_commands

        add_broker_commands(commands, _common)
        add_kms_commands(commands, _common)
        add_store_commands(commands, _common)
        add_user_commands(commands, _common)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _configure_logging(level: str, *, stream: TextIO = sys.stdout) -> None:
    """``level`` for sealmq's own loggers; libraries log at INFO at most.

    botocore at DEBUG logs whole KMS responses, data-key plaintexts included: the
    configured level must never reach other packages' loggers.
    """
    wanted = getattr(logging, level.upper())
    logging.basicConfig(
        level=max(wanted, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stream,
    )
    logging.getLogger("sealmq").setLevel(wanted)


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(settings: Settings) -> None:
    from sealmq.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    trigger = stop.wait()
    try:
        await serve(settings, shutdown_trigger=trigger)
    finally:
        trigger.close()  # not awaited at all when the start fails: no RuntimeWarning


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = _parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    try:
        settings = _load(args)
    except ConfigError as exc:
        print(f"sealmq: configuration refused:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        _configure_logging(settings.log_level)
        _install_loop()
        try:
            asyncio.run(_serve(settings))
        except BrokerKeyError as exc:
            # Creation failed, or the configuration names another key than the broker's.
            print(f"sealmq: cannot start: {_one_line(exc)}", file=sys.stderr)
            return EXIT_CONFIG
        except _EXPECTED as exc:
            # A busy port, a locked data folder, a damaged journal: one line, no traceback.
            print(f"sealmq: cannot start: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        return 0
    # Results go to stdout as JSON; only warnings and errors are logged, to stderr.
    _configure_logging("warning", stream=sys.stderr)
    try:
        if args.command in ("status", "broker"):
            from sealmq.cli.broker import run_broker, run_status

            if args.command == "status":
                run_status(settings)
            else:
                run_broker(settings, args)
        elif args.command == "kms":
            from sealmq.cli.kms import run_kms

            run_kms(settings, args)
        elif args.command == "store":
            from sealmq.cli.store import run_store

            return run_store(settings, args)
        elif args.command == "user":
            from sealmq.cli.users import run_user

            run_user(settings, args)
    except (BrokerKeyError, *_EXPECTED) as exc:
        print(f"sealmq: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
