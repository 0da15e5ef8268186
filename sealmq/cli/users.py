"""``sealmq user create|update|delete|list``: the broker's managed users.

Works whether or not the broker runs; a running broker reloads them at once, so
new connections use them without a restart (``sealmq.control.users``). Passwords
are read from the terminal (asked twice) or, when stdin is not a terminal, from
its first line, never from the command line (where ``ps`` would show them).
Users declared in the configuration file's ``[[users]]`` are listed but changed
only there.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from sealmq.cli.kms import CliError
from sealmq.cli.output import print_json
from sealmq.config import Settings
from sealmq.control import operations
from sealmq.control.users import Users, password_problem

__all__ = ["add_user_commands", "run_user"]


def add_user_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    user = commands.add_parser("user", help="create, update, delete and list broker users")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="USER_COMMAND")
    p = sub.add_parser("create", help="a new user (password from the terminal or stdin)")
    common(p)
    p.add_argument("username")
    p.add_argument("--groups", default="", help="comma-separated group names")
    p.add_argument("--console-access", action="store_true", help="may use the web console")
    p = sub.add_parser("update", help="change a user's password, groups or console access")
    common(p)
    p.add_argument("username")
    p.add_argument("--password", action="store_true", help="set a new password (asked for)")
    p.add_argument("--groups", default=None, help="comma-separated group names (replaces)")
    access = p.add_mutually_exclusive_group()
    access.add_argument("--console-access", dest="console_access", action="store_true")
    access.add_argument("--no-console-access", dest="console_access", action="store_false")
    p.set_defaults(console_access=None)
    p = sub.add_parser("delete", help="remove a user (connected clients stay connected)")
    common(p)
    p.add_argument("username")
    p = sub.add_parser("list", help="every user, configured and managed, as JSON")
    common(p)


def _groups(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _read_password() -> str:
    """The new password, checked against the rules before anything is opened."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CliError("the two passwords differ")
    else:
        line = sys.stdin.readline()
        if not line:
            raise CliError("no password on stdin")
        password = line.rstrip("\r\n")
    problem = password_problem(password)
    if problem is not None:
        raise CliError(problem)
    return password


def _progress(text: str) -> None:
    print(f"sealmq: {text}", file=sys.stderr, flush=True)


def run_user(settings: Settings, args: argparse.Namespace) -> None:
    command = args.user_command
    change: Callable[[Users], Any]
    if command == "create":
        password = _read_password()
        groups = _groups(args.groups)

        def change(users: Users) -> Any:
            return users.create(args.username, password, groups, console_access=args.console_access)

    elif command == "update":
        new_password = _read_password() if args.password else None
        new_groups = _groups(args.groups) if args.groups is not None else None
        if new_password is None and new_groups is None and args.console_access is None:
            raise CliError("nothing to update: give --password, --groups or --console-access")

        def change(users: Users) -> Any:
            return users.update(
                args.username,
                password=new_password,
                groups=new_groups,
                console_access=args.console_access,
            )

    elif command == "delete":

        def change(users: Users) -> Any:
            return users.delete(args.username)

    elif command == "list":
        print_json({"Users": operations.user_command(settings, Users.list, reload=False)})
        return
    else:  # pragma: no cover - argparse allows only the commands above
        raise CliError(f"unknown command {command}")
    print_json(operations.user_command(settings, change, progress=_progress))
