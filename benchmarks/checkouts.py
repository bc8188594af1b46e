"""Another commit's code beside this checkout, for a benchmark that measures two designs in one run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(commit: str, path: Path) -> Iterator[Path | None]:
    """`commit` checked out at `path` (a detached git worktree), removed afterwards; None, with the reason
    printed, where git cannot check it out (outside a clone, an unknown commit)."""
    added = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, capture_output=True, text=True
    )
    if added.returncode != 0:
        print(f"  no checkout of {commit} ({added.stderr.strip()[:200]})", flush=True)
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
