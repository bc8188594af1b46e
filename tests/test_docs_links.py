"""The repository stands on its own: every Markdown link points to a file inside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.dagster_daemon import ROOT

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md", "**/*.md"], cwd=ROOT, capture_output=True, text=True)
    files = {ROOT / name for name in listed.stdout.split()} if listed.returncode == 0 else set()
    return sorted(files or {p for p in ROOT.rglob("*.md") if ".venv" not in p.parts})


def test_every_markdown_link_points_to_a_file_in_the_repository() -> None:
    broken = []
    for page in markdown_files():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if not path:
                continue  # an anchor in the same page
            resolved = (page.parent / path).resolve()
            if "://" in target or not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links that leave the repository or lead nowhere:\n" + "\n".join(broken)
    assert len(markdown_files()) >= 7
