"""`make chaos` (`python -m chaos`): every segment of the campaign in turn, one table of figures, and
RELIABILITY.md rewritten from this run. `python -m chaos --quick` is the small version that
tests/test_chaos_quick.py runs inside `make test`; it leaves RELIABILITY.md alone."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .report import Row, machine, table, write_reliability

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = ("faults", "crashes", "throttling", "hostile_input", "soak", "secrets_scan")  # secrets last: it scans all
LABELS = {
    "faults": "faults",
    "crashes": "crashes",
    "throttling": "throttling",
    "hostile_input": "hostile input",
    "soak": "soak",
    "secrets_scan": "secrets",
}
# Hostile input's figures come as a plain dict (chaos/hostile_input.py); a figure whose name says
# something went wrong has the goal 0.
BAD_WORDS = ("fail", "broke", "leak", "mismatch", "hang", "unsafe", "unclear", "forever", "corrupt", "harm", "never")


@dataclass
class Campaign:
    rows: list[Row]
    seconds: float
    quick: bool


def hostile_rows(module: object, quick: bool) -> list[tuple[str, str, str, bool]]:
    figures: dict[str, int] = module.run(quick)  # type: ignore[attr-defined]
    rows = []
    for name, value in figures.items():
        bad = any(word in name.lower() for word in BAD_WORDS)
        rows.append((name, str(value), "0" if bad else "", value == 0 if bad else True))
    return rows


def segment_runner(name: str) -> Callable[[Path, bool], list[tuple[str, str, str, bool]]] | None:
    """The segment's run(scratch, quick), or None when its module does not exist (yet)."""
    try:
        module = importlib.import_module(f"chaos.{name}")
    except ModuleNotFoundError as missing:
        if missing.name == f"chaos.{name}":
            return None
        raise
    if name == "hostile_input":
        return lambda scratch, quick: hostile_rows(module, quick)
    return module.run


def run_campaign(quick: bool, only: list[str] | None = None) -> Campaign:
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dripfeed-chaos-") as scratch:
        for name in SEGMENTS:
            if only and name not in only and name != "secrets_scan":
                continue
            segment = segment_runner(name)
            label = LABELS[name]
            if segment is None:
                rows.append(Row(label, "segment", "not present (no chaos/" + name + ".py)", "", True))
                continue
            print(f"== {label}", flush=True)
            began = time.monotonic()
            try:
                figures = segment(Path(scratch), quick)
            except Exception:
                traceback.print_exc()
                figures = [("segment ran to its end", "no: it raised (see the output)", "yes", False)]
            figures.append(("segment's wall time", f"{time.monotonic() - began:.0f} s", "", True))
            for figure, value, goal, ok in figures:
                rows.append(Row(label, figure, value, goal, ok))
                print(
                    f"  {figure}: {value}" + (f" (goal {goal}{'' if ok else ', MISSED'})" if goal else ""), flush=True
                )
    return Campaign(rows, time.monotonic() - started, quick)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small campaign of make test (≤ 2 minutes)")
    parser.add_argument("--only", nargs="*", help="run only these segments (the secrets scan always runs)")
    args = parser.parse_args()
    code = commit()  # what the campaign ran, before anyone edits the tree during its minutes
    campaign = run_campaign(args.quick, args.only)
    print()
    print(table(campaign.rows))
    print(f"\n{'quick' if args.quick else 'full'} campaign: {campaign.seconds / 60:.1f} min on {machine()}")
    if not args.quick and not args.only:
        write_reliability(ROOT / "RELIABILITY.md", campaign.rows, campaign.seconds, code)
        print("wrote RELIABILITY.md")
    if not all(row.ok for row in campaign.rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
