"""Write one benchmark's results into its own section of docs/benchmarks.md, leaving the others alone."""

from __future__ import annotations

import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import torch

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun that script to refresh it.\n"


def machine() -> str:
    """One line naming the CPU, thread count and software versions, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table with ``header`` and ``rows`` (cells already formatted)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or append) the section ``name`` with ``body``, stamped with the command and the date."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    section = (f"<!-- {name}:start -->\n{body.rstrip()}\n\nReproduce: `{command}` ({stamp}; {machine()})\n"
               f"<!-- {name}:end -->")
    text = REPORT.read_text() if REPORT.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
