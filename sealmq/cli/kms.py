"""``sealmq kms ...``: the embedded key service from the command line, as the account root.

Each command opens the key service of the data folder directly (``[kms]
data_dir``, else the broker's ``data_dir``), whether or not the broker runs: the
keystore takes an inter-process lock and reloads what another process changed
(see ``sealmq.kms.keystore``), so the command and a running broker never
overwrite each other. Results print as the AWS CLI prints them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sealmq.cli.output import CliError, print_json
from sealmq.config import Settings
from sealmq.control.operations import open_embedded_service
from sealmq.kms.audit import GENESIS_HASH, audit_files, verify_audit
from sealmq.kms.service import KeyService

__all__ = ["CliError", "add_kms_commands", "run_kms"]


Command = Callable[[KeyService, argparse.Namespace], dict[str, Any] | None]

#: Variables that would win over the credentials file in the AWS SDKs' chains.
_SHADOWING = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def _pages(service: KeyService, operation: str, request: dict[str, Any], field: str) -> list[Any]:
    """Every item of a paginated list operation (the AWS CLI follows markers too)."""
    items: list[Any] = []
    request = dict(request)
    while True:
        response = service.call(operation, request)
        items += response.get(field, [])
        if not response.get("Truncated"):
            return items
        request["Marker"] = response["NextMarker"]


def _create_key(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {}
    if args.description is not None:
        request["Description"] = args.description
    response = service.call("CreateKey", request)
    if args.alias is not None:
        alias = args.alias if args.alias.startswith("alias/") else f"alias/{args.alias}"
        key_id = response["KeyMetadata"]["KeyId"]
        try:
            service.call("CreateAlias", {"AliasName": alias, "TargetKeyId": key_id})
        except Exception:
            # One step or nothing: a key nobody can find by the alias asked for is clutter.
            service.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})
            raise
        response["AliasName"] = alias
    return response


def _list_keys(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    return {"Keys": _pages(service, "ListKeys", {}, "Keys")}


def _list_aliases(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    request = {"KeyId": args.key_id} if args.key_id else {}
    return {"Aliases": _pages(service, "ListAliases", request, "Aliases")}


def _describe_key(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    return service.call("DescribeKey", {"KeyId": args.key_id})


def _create_alias(service: KeyService, args: argparse.Namespace) -> None:
    service.call("CreateAlias", {"AliasName": args.alias_name, "TargetKeyId": args.target_key_id})


def _create_grant(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {
        "KeyId": args.key_id,
        "GranteePrincipal": args.grantee_principal,
        "Operations": list(args.operations),
    }
    if args.retiring_principal:
        request["RetiringPrincipal"] = args.retiring_principal
    if args.name:
        request["Name"] = args.name
    if args.constraints:
        try:
            request["Constraints"] = json.loads(args.constraints)
        except ValueError as exc:
            raise CliError(f"--constraints is not JSON: {exc}") from None
    return service.call("CreateGrant", request)


def _list_grants(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"KeyId": args.key_id}
    if args.grantee_principal:
        request["GranteePrincipal"] = args.grantee_principal
    return {"Grants": _pages(service, "ListGrants", request, "Grants")}


def _key_only(operation: str) -> Command:
    def command(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
        return service.call(operation, {"KeyId": args.key_id})

    return command


def _revoke_grant(service: KeyService, args: argparse.Namespace) -> None:
    service.call("RevokeGrant", {"KeyId": args.key_id, "GrantId": args.grant_id})


def _schedule_key_deletion(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"KeyId": args.key_id}
    if args.pending_window_in_days is not None:
        request["PendingWindowInDays"] = args.pending_window_in_days
    return service.call("ScheduleKeyDeletion", request)


def _get_key_policy(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    return service.call("GetKeyPolicy", {"KeyId": args.key_id, "PolicyName": "default"})


def _put_key_policy(service: KeyService, args: argparse.Namespace) -> None:
    policy: str = args.policy
    if policy.startswith("file://"):  # as the AWS CLI reads parameters from files
        try:
            policy = Path(policy[len("file://") :]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read --policy {policy[len('file://') :]}: {exc}") from None
    request: dict[str, Any] = {"KeyId": args.key_id, "PolicyName": "default", "Policy": policy}
    if args.bypass_policy_lockout_safety_check:
        request["BypassPolicyLockoutSafetyCheck"] = True
    service.call("PutKeyPolicy", request)


def _update_key_description(service: KeyService, args: argparse.Namespace) -> None:
    service.call("UpdateKeyDescription", {"KeyId": args.key_id, "Description": args.description})


def _verify_audit(service: KeyService, args: argparse.Namespace) -> dict[str, Any]:
    audit = service.audit_log
    if audit is None:
        raise CliError("the key service keeps no audit trail")
    keystore = service.keystore
    with keystore.lock:  # the checkpoint another process sealed since this one opened
        checkpoint = keystore.audit_checkpoint
    ok, line, reason = verify_audit(audit.path, args.expected_head, checkpoint=checkpoint)
    if not ok:
        where = f" at line {line}" if line is not None else ""
        raise CliError(f"audit trail {audit.path} is broken{where}: {reason}")
    files = audit_files(audit.path)
    count, last = 0, b""
    for file in files:
        lines = file.read_bytes().splitlines()
        count += len(lines)
        last = lines[-1] if lines else last
    head = hashlib.sha256(last).hexdigest() if count else GENESIS_HASH
    return {
        "Valid": True,
        "Path": str(audit.path),
        "Files": [file.name for file in files],
        "Lines": count,
        "Head": head,
        "CheckpointLines": checkpoint.lines if checkpoint is not None else 0,
    }


def client_environment(settings: Settings, service: KeyService, host: str | None) -> dict[str, str]:
    """The environment that points AWS SDKs and the AWS CLI at the embedded key service.

    ``AWS_ENDPOINT_URL_KMS`` (the ``kms`` listener), the admin's credentials file,
    the service's region and, when the broker made its own certificates, the local
    CA as ``AWS_CA_BUNDLE``.
    """
    listener = settings.listener("kms")
    if listener is None:
        raise CliError("the kms listener is off in this configuration: clients cannot reach it")
    env = {
        "AWS_ENDPOINT_URL_KMS": f"https://{settings.url_host(host)}:{listener.port}",
        "AWS_SHARED_CREDENTIALS_FILE": str(settings.kms_dir / "credentials"),
        "AWS_DEFAULT_REGION": service.region,
    }
    if settings.tls.generate:
        env["AWS_CA_BUNDLE"] = str(settings.tls_dir / "ca.pem")
    return env


def _client_env(settings: Settings, service: KeyService, args: argparse.Namespace) -> str:
    env = client_environment(settings, service, args.host)
    lines = [f"unset {' '.join(_SHADOWING)}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    return "\n".join(lines)


def add_kms_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``sealmq kms <command>`` to the parser."""
    kms = commands.add_parser("kms", help="the embedded key service (AWS KMS API), as the admin")
    sub = kms.add_subparsers(dest="kms_command", required=True, metavar="KMS_COMMAND")

    def add(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        parser.set_defaults(kms_run=command)
        common(parser)
        return parser

    p = add("create-key", _create_key, "create a customer managed key (and its alias)")
    p.add_argument("--description")
    p.add_argument("--alias", help="alias/NAME to create for the new key in the same step")
    add("list-keys", _list_keys, "list the customer and AWS managed keys")
    p = add("list-aliases", _list_aliases, "list aliases")
    p.add_argument("--key-id")
    p = add("describe-key", _describe_key, "describe a key (id, ARN, alias name or alias ARN)")
    p.add_argument("--key-id", required=True)
    p = add("create-alias", _create_alias, "create an alias for a key")
    p.add_argument("--alias-name", required=True)
    p.add_argument("--target-key-id", required=True)
    p = add("create-grant", _create_grant, "create a grant on a key")
    p.add_argument("--key-id", required=True)
    p.add_argument("--grantee-principal", required=True)
    p.add_argument("--operations", nargs="+", required=True)
    p.add_argument("--retiring-principal")
    p.add_argument("--name")
    p.add_argument("--constraints", help='JSON, e.g. {"EncryptionContextSubset": {"k": "v"}}')
    p = add("list-grants", _list_grants, "list the grants on a key")
    p.add_argument("--key-id", required=True)
    p.add_argument("--grantee-principal")
    p = add("revoke-grant", _revoke_grant, "revoke a grant")
    p.add_argument("--key-id", required=True)
    p.add_argument("--grant-id", required=True)
    for name, operation, text in (
        ("disable-key", "DisableKey", "disable a key"),
        ("enable-key", "EnableKey", "enable a key"),
        ("cancel-key-deletion", "CancelKeyDeletion", "cancel a scheduled deletion"),
        ("rotate-key", "RotateKeyOnDemand", "rotate a key's material now"),
    ):
        p = add(name, _key_only(operation), text)
        p.add_argument("--key-id", required=True)
    p = add("get-key-policy", _get_key_policy, "print a key's policy")
    p.add_argument("--key-id", required=True)
    p = add("put-key-policy", _put_key_policy, "replace a key's policy (enforced at once)")
    p.add_argument("--key-id", required=True)
    p.add_argument("--policy", required=True, help="the policy JSON, or file://PATH")
    p.add_argument("--bypass-policy-lockout-safety-check", action="store_true")
    p = add("update-key-description", _update_key_description, "change a key's description")
    p.add_argument("--key-id", required=True)
    p.add_argument("--description", required=True)
    p = add("schedule-key-deletion", _schedule_key_deletion, "schedule a key's deletion")
    p.add_argument("--key-id", required=True)
    p.add_argument("--pending-window-in-days", type=int)
    p = add(
        "verify-audit",
        _verify_audit,
        "check the audit trail's hash chain, across its rotated files, and that no line was cut "
        "since the key service's last checkpoint",
    )
    p.add_argument("--expected-head", help="hash the last line must have (kept elsewhere)")
    p = sub.add_parser(
        "client-env",
        help="print shell lines pointing AWS SDKs/CLI at this key service: "
        'eval "$(sealmq kms client-env)"',
    )
    p.set_defaults(kms_env=True)
    common(p)
    p.add_argument("--host", help="host name clients use for the kms listener (default: bind host)")


def run_kms(settings: Settings, args: argparse.Namespace) -> None:
    """Run the parsed ``sealmq kms`` command and print its result."""
    service = open_embedded_service(settings)
    try:
        if getattr(args, "kms_env", False):
            print(_client_env(settings, service, args))
            return
        command: Command = args.kms_run
        response = command(service, args)
    finally:
        service.close()
    # The admin's RetireGrant/Disable/... answer {}: nothing is printed, as by the AWS CLI.
    print_json(response)
