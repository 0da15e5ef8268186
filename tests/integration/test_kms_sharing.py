"""One key service, several processes: a broker and ``sealmq kms`` share the keystore safely.

Every call holds an exclusive ``flock`` on ``keys/kms.lock`` and reloads a
keystore another process replaced; every audit line is appended under a lock on
the trail and chained to the true last line. So changes made in one process are
seen by the next call in any other, none is lost, and the trail still verifies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sealmq.kms.audit import verify_audit
from sealmq.kms.service import open_key_service
from tests.support import TIMEOUT

CHILD = """
import sys
from sealmq.kms.service import open_key_service

service = open_key_service(sys.argv[1], audit_fsync=False)
for i in range(int(sys.argv[3])):
    key = service.call("CreateKey", {"Description": f"{sys.argv[2]}-{i}"})["KeyMetadata"]
    alias = f"alias/{sys.argv[2]}-{i}"
    service.call("CreateAlias", {"AliasName": alias, "TargetKeyId": key["KeyId"]})
service.close()
"""


def test_two_services_on_one_folder_see_each_others_changes(tmp_path: Path) -> None:
    first = open_key_service(tmp_path, audit_fsync=False)
    second = open_key_service(tmp_path, audit_fsync=False)
    try:
        key = first.call("CreateKey", {})["KeyMetadata"]["KeyId"]
        assert second.call("DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyState"] == "Enabled"
        second.call("DisableKey", {"KeyId": key})
        assert first.call("DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyState"] == "Disabled"
        # A change made in one is never undone by a later save of the other.
        first.call("CreateAlias", {"AliasName": "alias/one", "TargetKeyId": key})
        second.call("EnableKey", {"KeyId": key})
        aliases = first.call("ListAliases", {})["Aliases"]
        assert [a["AliasName"] for a in aliases if a.get("TargetKeyId") == key] == ["alias/one"]
        assert first.call("DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyState"] == "Enabled"
    finally:
        first.close()
        second.close()
    assert verify_audit(tmp_path / "audit" / "kms.jsonl") == (True, None, "")


@pytest.mark.slow
def test_processes_creating_keys_at_once_lose_nothing(tmp_path: Path) -> None:
    open_key_service(tmp_path).close()  # created once, so both children open the same account
    count = 15
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), name, str(count)])
        for name in ("left", "right")
    ]
    for child in children:
        assert child.wait(TIMEOUT * 3) == 0
    service = open_key_service(tmp_path)
    try:
        keys = service.call("ListKeys", {"Limit": 1000})["Keys"]
        listed = service.call("ListAliases", {"Limit": 100})["Aliases"]
        aliases = {a["AliasName"] for a in listed if not a["AliasName"].startswith("alias/aws/")}
    finally:
        service.close()
    assert len(keys) == 2 * count
    assert aliases == {f"alias/{side}-{i}" for side in ("left", "right") for i in range(count)}
    ok, line, reason = verify_audit(tmp_path / "audit" / "kms.jsonl")
    assert ok, f"line {line}: {reason}"
