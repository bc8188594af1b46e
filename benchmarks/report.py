"""Benchmark sections rendered into BENCHMARKS.md, all figures from one run."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class Section:
    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, what: str, measured: str, target: str) -> None:
        self.rows.append((what, measured, target))
        print(f"  {what}: {measured} (target {target})", flush=True)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((header, rows))
        for row in rows:
            print("  " + " | ".join(row), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.rows:
            lines += ["| measure | measured | target |", "|---|---|---|"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows]
            lines.append("")
        for header, rows in self.tables:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        lines += [*self.notes, ""] if self.notes else []
        return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def run_parts(title: str, *parts: Callable[[Section, Path], None]) -> Section:
    """One section, its parts measured in turn, each given the same scratch directory."""
    section = Section(title)
    with tempfile.TemporaryDirectory() as scratch:
        for part in parts:
            part(section, Path(scratch))
    return section
