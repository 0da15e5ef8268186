"""Metrics, the stdout table and the ``bench/RESULTS.md`` record."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"] | None


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    value: float
    unit: str
    better: Better = None
    digits: int = 1
    compare: bool = True  # False: context only (no sealmq/other ratio)

    def text(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        if self.digits == 0:
            return f"{self.value:,.0f}"
        return f"{self.value:,.{self.digits}f}"


@dataclass(slots=True)
class BrokerReport:
    broker: str
    description: str = ""
    tls: str = "?"
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def percentile(sorted_values: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


# The brokers sealmq is compared with, each getting a "sealmq/<other>" column.
COMPARED = ("activemq", "rabbitmq", "mosquitto")


def _ratio(sealmq: Metric | None, other: Metric | None) -> str:
    if sealmq is None or other is None or not sealmq.compare:
        return ""
    if math.isnan(sealmq.value) or math.isnan(other.value) or other.value == 0:
        return "n/a"
    ratio = sealmq.value / other.value
    if sealmq.better is None:
        return f"{ratio:.2f}x"
    good = ratio >= 1 if sealmq.better == "higher" else ratio <= 1
    return f"{ratio:.2f}x {'better' if good else 'worse'}"


def _rows(reports: Sequence[BrokerReport]) -> tuple[list[str], list[list[str]]]:
    names = [r.broker for r in reports]
    order: list[str] = []
    by_key: dict[str, dict[str, Metric]] = {}
    for report in reports:
        for metric in report.metrics:
            if metric.key not in by_key:
                order.append(metric.key)
                by_key[metric.key] = {}
            by_key[metric.key][report.broker] = metric
    others = [o for o in COMPARED if "sealmq" in names and o in names]
    header = ["metric", *names] + [f"sealmq/{o}" for o in others]
    rows: list[list[str]] = []
    for key in order:
        cells = by_key[key]
        any_metric = next(iter(cells.values()))
        arrow = {"higher": " ↑", "lower": " ↓", None: ""}[any_metric.better]
        row = [f"{any_metric.label} ({any_metric.unit}){arrow}"]
        row += [cells[n].text() if n in cells else "-" for n in names]
        row += [_ratio(cells.get("sealmq"), cells.get(o)) for o in others]
        rows.append(row)
    return header, rows


def text_table(reports: Sequence[BrokerReport]) -> str:
    header, rows = _rows(reports)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append("↑ higher is better, ↓ lower is better")
    return "\n".join(out)


def markdown_table(reports: Sequence[BrokerReport]) -> str:
    header, rows = _rows(reports)
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_RESULTS_HEADER = """\
# sealmq vs ActiveMQ, RabbitMQ and Mosquitto: STOMP- and MQTT-over-TLS benchmark results

Written by `python -m bench --record` (see `bench/README.md`). One section per
configuration (the command), newest first: recording a configuration again
replaces its older section. Ratios are sealmq / the other broker; ↑ higher is
better, ↓ lower is better.
"""

_START = "<!-- bench-run: "
_END = "<!-- bench-run-end -->"
# An older marker may start with the date the run was made: "2026-11-28 python -m ...".
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2} ")


def record(path: Path, key: str, section: str) -> None:
    """Put ``section`` first among the recorded runs, replacing every older one of ``key``.

    ``key`` names the configuration (the command line); a section recorded under the
    same key, with or without a leading date, is removed.
    """
    block = f"{_START}{key} -->\n{section.rstrip()}\n{_END}\n"
    text = path.read_text() if path.exists() else _RESULTS_HEADER
    pattern = re.compile(re.escape(_START) + r"(.*?) -->\n.*?" + re.escape(_END) + r"\n?", re.S)

    def same(match: re.Match[str]) -> bool:
        return _DATED.sub("", match.group(1)) == key

    for match in reversed([m for m in pattern.finditer(text) if same(m)]):
        text = text[: match.start()] + text[match.end() :]
    first = text.find(_START)
    if first < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        text = text[:first] + block + "\n" + text[first:]
    path.write_text(re.sub(r"\n{3,}", "\n\n", text))
