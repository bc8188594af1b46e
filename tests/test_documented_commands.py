"""Every shell command in README.md and docs/ works as written: each block of them says how it is
tested (a comment just above it), and the blocks meant for a running `make dev` are run, exactly as
written, beside a real one.

    <!-- tested: with make dev running -->       run here, from the repository's root, with make dev up
    <!-- tested: serves <url> -->                 run here until <url> answers, then stopped
    <!-- tested: by <path> ... -->                run by the test or script at <path>

`make dev` runs in a copy of the repository's root (links to its files), so that its `.env`, `.dev`
and ports are the test's own and a developer's demo is left alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster._core.instance.ref import InstanceRef  # the instance make dev's daemon uses

from tasklane_sim.server import free_port, wait_until_healthy
from tests.support.dagster_daemon import ROOT, session_processes, wait_for_webserver, wait_until

BLOCK = re.compile(r"(?:<!-- tested: (?P<how>.*?) -->\n)?```(?P<lang>bash|sh|shell)\n(?P<body>.*?)```", re.DOTALL)
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    document: str
    how: str
    body: str

    def __str__(self) -> str:
        return f"{self.document}: {self.body.splitlines()[0]}"


def documented_blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        found += [Block(document, m["how"] or "", m["body"]) for m in BLOCK.finditer(text)]
    return found


def blocks_tested(how: str) -> list[Block]:
    return [block for block in documented_blocks() if block.how.startswith(how)]


def test_every_documented_command_says_how_it_is_tested() -> None:
    blocks = documented_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        if block.how.startswith("by "):
            paths = re.findall(r"(?:tests/[\w/]+\.py|\.ci/run)", block.how)
            assert paths and all((ROOT / path).exists() for path in paths), f"{block}: {block.how!r}"
        else:
            assert block.how == "with make dev running" or block.how.startswith("serves http"), f"{block}"


@dataclass(frozen=True)
class Demo:
    root: Path  # the copy of the repository's root make dev runs in
    env: dict[str, str]  # what a person's shell there has: the venv on PATH, DAGSTER_HOME


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("repository")
    for entry in ROOT.iterdir():
        if entry.name not in (".env", ".dev", ".git", "test-output"):
            (root / entry.name).symlink_to(entry)
    home = root / ".dev" / "dagster_home"
    sim_port, ui_port = free_port(), free_port()
    env = {
        **os.environ,
        "SIM_PORT": str(sim_port),
        "DAGSTER_PORT": str(ui_port),
        "DRIPFEED_METRICS_PORT": str(free_port()),
        "DAGSTER_HOME": str(home),
    }
    for setting in ("TASKLANE_BASE_URL", "DRIPFEED_TENANTS_FILE"):  # what make dev sets, not the test session
        env.pop(setting, None)
    log = root / "make-dev.log"
    with log.open("w") as out:
        make_dev = subprocess.Popen(
            ["make", "dev"], cwd=root, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{sim_port}", 240, make_dev)
        wait_for_webserver(f"http://127.0.0.1:{ui_port}", make_dev, log.read_text, 180)
        shell = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        shell["DAGSTER_HOME"] = str(home)
        for setting in ("TASKLANE_BASE_URL", "DRIPFEED_TENANTS_FILE"):
            shell.pop(setting, None)
        yield Demo(root, shell)
    finally:
        make_dev.send_signal(signal.SIGTERM)
        make_dev.wait(timeout=60)
        wait_until(lambda: not session_processes(make_dev.pid), 60, "make dev to stop")


# What Dagster prints when a command or an API is deprecated, superseded (a CLI command with a `dg`
# successor), beta or preview: none may reach a user following the docs.
WARNING = re.compile(r"(Deprecation|Supersession|Beta|Preview)Warning|superseded|deprecated", re.IGNORECASE)


def dagster_warnings(output: str) -> list[str]:
    return [line.strip()[:300] for line in output.splitlines() if WARNING.search(line)]


def run_as_written(block: Block, demo: Demo) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.body],
        cwd=demo.root,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.e2e  # beside a real make dev
@pytest.mark.timeout(900)
def test_the_commands_for_a_running_make_dev_work_as_written(demo: Demo) -> None:
    blocks = blocks_tested("with make dev running")
    assert {block.document for block in blocks} >= {"README.md", "docs/operations.md"}
    output = ""
    for block in blocks:
        done = run_as_written(block, demo)
        assert done.returncode == 0, f"{block} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        warned = dagster_warnings(done.stdout + done.stderr)
        assert not warned, f"{block} printed Dagster's warnings, which a user would see: {warned}"
        output += done.stdout
    warned = dagster_warnings((demo.root / "make-dev.log").read_text())
    assert not warned, f"make dev printed Dagster's warnings: {warned}"
    backfill = re.search(r"Launched backfill job `?([\w-]+)", output)
    assert backfill, output[-2000:]
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(demo.env["DAGSTER_HOME"])) as instance:

        def runs() -> list[dg.DagsterRun]:
            return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.group(1)}))

        wait_until(lambda: len(runs()) == 2 and all(r.is_finished for r in runs()), 300, "the backfill's runs")
        assert sorted(r.tags["dagster/partition"] for r in runs()) == ["acme", "globex"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs())


@pytest.mark.e2e  # make dev's simulator, and the documented one
def test_a_documented_server_serves_as_written(demo: Demo) -> None:
    for block in blocks_tested("serves "):
        url = block.how.removeprefix("serves ").strip()
        server = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block.body], cwd=demo.root, env=demo.env, start_new_session=True
        )
        try:
            wait_until(lambda u=url: _answers(u), 120, f"{url} to answer")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
