"""The compute log manager the shipped instances use: a run's stdout and stderr reach the files the
UI reads and still reach the console, with no helper process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.dagster_daemon import ROOT

CAPTURE = """
import os, sys
import psutil
from dripfeed.compute_logs import ThreadedComputeLogManager

manager = ThreadedComputeLogManager(base_dir=sys.argv[1])
key = ["a-run-id", "compute_logs", "abcdefgh"]
with manager.capture_logs(key):
    print("printed to stdout")
    os.write(2, b"written to fd 2\\n")
    subprocess_output = os.system("echo from a child process")
    helpers = psutil.Process().children(recursive=True)
assert not helpers, helpers
assert manager.is_capture_complete(key)
print("after the capture")
"""


def test_a_capture_fills_the_ui_files_echoes_to_the_console_and_starts_no_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    logs = tmp_path / "a-run-id" / "compute_logs"
    assert (logs / "abcdefgh.out").read_text() == "printed to stdout\nfrom a child process\n"
    assert (logs / "abcdefgh.err").read_text() == "written to fd 2\n"
    assert done.stdout == "printed to stdout\nfrom a child process\nafter the capture\n"
    assert done.stderr == "written to fd 2\n"
