"""The ``sealmq`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from sealmq.config import ConfigError, Settings, load_settings
from sealmq.store.errors import StoreError

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $SEALMQ_CONFIG, else built-in defaults)",
    )
    parser.add_argument("--data-dir", type=Path, help="data folder (overrides the config file)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealmq", description="An encrypted-everywhere message broker."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the broker")
    _common(serve)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _load(args)
    except ConfigError as exc:
        print(f"sealmq: configuration refused:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings.log_level)
    if args.command == "serve":
        _install_loop()
        try:
            asyncio.run(_serve(settings))
        except (OSError, StoreError) as exc:
            # A busy port, a locked data folder, a damaged journal: one line, no traceback.
            print(f"sealmq: cannot start: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
