"""Run every benchmark suite and rewrite BENCHMARKS.md from this one run."""

from __future__ import annotations

from pathlib import Path

from . import (
    api_resource_bench,
    busy_tick_bench,
    instance_soak_bench,
    metrics_bench,
    run_cost_bench,
    scale_bench,
    simulator_bench,
    sync_bench,
    tick_bench,
)
from .report import machine

SUITES = [
    simulator_bench,
    api_resource_bench,
    sync_bench,
    run_cost_bench,
    tick_bench,
    metrics_bench,
    busy_tick_bench,
    scale_bench,
    instance_soak_bench,
]
OUTPUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def main() -> None:
    sections = []
    for suite in SUITES:
        print(f"== {suite.__name__}", flush=True)
        sections.append(suite.run())
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench`; every figure below comes from the same run, on this machine:",
        f"{machine()}.",
        "",
        "",
    ]
    OUTPUT.write_text("\n".join(header) + "\n".join(s.markdown() for s in sections))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
