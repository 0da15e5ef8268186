"""Run the project's Java test programs (``tests/openwire/java``) with ActiveMQ's own JMS
client, from Debian's ``libactivemq-java``, against a broker's OpenWire listener."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import PASSWORD, TIMEOUT, USER

JAVA_SOURCES = Path(__file__).parent / "openwire" / "java"
#: The client and what it needs at run time, as Debian installs them.
CLASSPATH = [
    Path("/usr/share/java") / jar
    for jar in (
        "activemq-client.jar",
        "geronimo-jms_1.1_spec.jar",
        "geronimo-j2ee-management-1.1-spec.jar",
        "hawtbuf.jar",
        "slf4j-api.jar",
        "slf4j-nop.jar",
    )
]
TRUSTSTORE_PASSWORD = "changeit"


def compile_programs(out: Path) -> Path:
    """Compile every program into ``out`` (once per test session); return ``out``."""
    missing = [str(jar) for jar in CLASSPATH if not jar.exists()]
    assert not missing, f"missing {missing}: `make install-test` installs libactivemq-java"
    assert shutil.which("javac"), "no javac: `make install-test` installs default-jdk-headless"
    sources = sorted(str(p) for p in JAVA_SOURCES.glob("*.java"))
    subprocess.run(
        ["javac", "-nowarn", "-d", str(out), "-cp", _classpath(), *sources],
        check=True,
        timeout=TIMEOUT * 12,
    )
    return out


def _classpath(*extra: Path) -> str:
    return os.pathsep.join(str(p) for p in (*extra, *CLASSPATH))


def truststore(ca_file: Path, out: Path) -> Path:
    """A PKCS12 truststore holding the broker's generated CA."""
    if out.exists():
        out.unlink()
    subprocess.run(
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-alias",
            "sealmq-ca",
            "-file",
            str(ca_file),
            "-keystore",
            str(out),
            "-storetype",
            "PKCS12",
            "-storepass",
            TRUSTSTORE_PASSWORD,
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT * 3,
    )
    return out


@dataclass
class JmsRun:
    stdout: str
    stderr: str
    results: dict[str, str]

    def assert_ok(self, *names: str) -> None:
        for name in names:
            assert self.results.get(name) == "OK", (
                f"{name}: {self.results.get(name, 'not run')}\n{self.stderr[-4000:]}"
            )


@dataclass
class Jms:
    """Runs ``JmsChecks`` (or another program) against one OpenWire port."""

    classes: Path
    store: Path
    port: int
    user: str = USER
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"ssl://127.0.0.1:{self.port}"

    def run(
        self, *checks: str, program: str = "JmsChecks", url: str | None = None, timeout: float = 0
    ) -> JmsRun:
        """Run ``program`` with ``checks`` (``name`` or ``name=destination``)."""
        with self.start(*checks, program=program, url=url) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout or TIMEOUT * 6)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
                stderr += "\n(the Java program timed out and was killed)"
        return parse(stdout, stderr)

    def start(
        self, *checks: str, program: str = "JmsChecks", url: str | None = None
    ) -> subprocess.Popen[str]:
        """Start ``program`` with pipes for stdin, stdout and stderr; the caller waits."""
        command = [
            "java",
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-Xss512k",
            f"-Djavax.net.ssl.trustStore={self.store}",
            f"-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}",
            "-Djavax.net.ssl.trustStoreType=PKCS12",
            f"-Dwait={int(TIMEOUT * 1000)}",
            "-cp",
            _classpath(self.classes),
            program,
            url or self.url,
            self.user,
            self.password,
            *checks,
        ]
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def parse(stdout: str, stderr: str) -> JmsRun:
    """The ``OK <check>`` and ``FAIL <check>: <why>`` lines of a program's output."""
    results: dict[str, str] = {}
    for line in stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status == "OK":
            results[rest.strip()] = "OK"
        elif status == "FAIL":
            name, _, why = rest.partition(": ")
            results[name] = f"FAIL {why}"
    return JmsRun(stdout, stderr, results)
