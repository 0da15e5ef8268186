"""The README's examples, run as a newcomer runs them, so that they cannot rot.

Every fenced ``python`` block of README.md is a complete script. The test starts
a broker with no users (``sealmq serve``, as ``make run`` does), reads the CA path
and the admin password from what it prints, exports them as the README says
(``SEALMQ_CA``, ``SEALMQ_PASSWORD``) and runs each block, unchanged but for the
default ports (61614, 8883, 5671: the test broker listens on free ones), in a fresh
interpreter whose working folder is not the broker's. Blocks marked ``python
fragment`` are skipped; the README names the test that covers each.

The stomp.py example once lost its message about 4 times in 6 (the script exited
before stomp.py's I/O thread wrote the SEND): it runs several times.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealmq.config import load_settings
from sealmq.config.settings import DEFAULT_TLS_PORTS
from tests.support import TIMEOUT, BrokerProcess, ProcessBrokers

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"

#: What each runnable block prints (found by a line of its code); a new runnable
#: block needs an entry here, so that the test says what it must do.
EXPECTED = {
    "import stomp": ("received: hello", 6),
    "import paho.mqtt.client as mqtt": ("received: orders/new b'hello'", 2),
    "from proton import": ("received: hello", 2),
}


@dataclass(frozen=True)
class Block:
    info: str
    code: str
    line: int

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info else ""


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block of ``text``: its info string, its code, its first line."""
    blocks, info, start, code = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if info is None:
            match = re.match(r"^```(.*)$", line)
            if match:
                info, start, code = match.group(1).strip(), number + 1, []
        elif line.rstrip() == "```":
            blocks.append(Block(info, "\n".join(code) + "\n", start))
            info = None
        else:
            code.append(line)
    assert info is None, f"README.md: the block opened on line {start - 1} is never closed"
    return blocks


def _runnable() -> list[Block]:
    return [
        b
        for b in readme_blocks(README.read_text())
        if b.language == "python" and b.info == "python"
    ]


def _printed(output: str, pattern: str) -> str:
    found = re.findall(pattern, output)
    assert len(found) == 1, f"{pattern!r} in {output}"
    value: str = found[0]
    return value


def test_every_python_block_is_runnable_or_a_named_fragment() -> None:
    blocks = readme_blocks(README.read_text())
    python = [b for b in blocks if b.language == "python"]
    runnable = _runnable()
    for block in python:
        assert block.info in ("python", "python fragment"), f"line {block.line}: {block.info!r}"
    for block in runnable:
        keys = [key for key in EXPECTED if key in block.code]
        assert len(keys) == 1, f"README.md line {block.line}: no expected output in EXPECTED"
    assert len(runnable) == len(EXPECTED), "every example in EXPECTED is in the README"
    text = README.read_text()
    for block in python:
        if block.info == "python fragment":
            # The README says, right before it, which test runs it in full.
            before = text.splitlines()[max(0, block.line - 5) : block.line - 1]
            named = re.findall(r"tests/\S+\.py", " ".join(before))
            assert named, f"README.md line {block.line}: a fragment must name its test"
            assert all((README.parent / path.strip("`")).is_file() for path in named)


def test_the_configuration_block_is_accepted(tmp_path: Path) -> None:
    blocks = [b for b in readme_blocks(README.read_text()) if b.language == "toml"]
    assert blocks, "the README shows the configuration"
    for block in blocks:
        config = tmp_path / f"line{block.line}.toml"
        config.write_text(block.code)
        load_settings(config)  # raises ConfigError naming every problem


def _run(block: Block, broker: BrokerProcess, env: dict[str, str], cwd: Path) -> str:
    ports = {
        DEFAULT_TLS_PORTS["stomp"]: broker.stomp_port,
        DEFAULT_TLS_PORTS["mqtt"]: broker.mqtt_port,
        DEFAULT_TLS_PORTS["amqp"]: broker.amqp_port,
    }
    code = block.code
    assert any(re.search(rf"\b{port}\b", code) for port in ports), "an example names its port"
    for default, port in ports.items():
        code = re.sub(rf"\b{default}\b", str(port), code)
    script = cwd / f"readme_line{block.line}.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, script.name],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    )
    assert result.returncode == 0, f"README.md line {block.line}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_the_readme_examples_run_as_written(processes: ProcessBrokers, tmp_path: Path) -> None:
    broker = processes.new(users=None, mqtt=True, amqp=True).start()
    output = broker.run_output()
    ca = _printed(output, r"Clients trust the broker's certificate authority at: (\S+)")
    assert Path(ca).is_absolute(), "the printed CA path works from any folder"
    assert Path(ca) == broker.ca_file
    password = _printed(output, r"Created user 'admin' with password: (\S+)")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "SEALMQ_CA": ca, "SEALMQ_PASSWORD": password}
    for block in _runnable():
        (key,) = (key for key in EXPECTED if key in block.code)
        expected, runs = EXPECTED[key]
        for run in range(runs):
            printed = _run(block, broker, env, elsewhere)
            assert expected in printed.splitlines(), (
                f"README.md line {block.line}, run {run + 1}: {printed!r}"
            )
    assert broker.stop() == 0
